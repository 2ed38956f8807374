//! The dashboard's links and cookie as a browser uses them: the instance ids `.` and `..`
//! (a browser drops such a path segment, `%2E` too) link to `/instance?id=...`, whose
//! page and actions work; and the token's cookie of one dashboard does not log out
//! another on another port of the same host (a browser sends a host's cookies to all its
//! ports).

use std::collections::BTreeMap;
use std::time::Duration;

use durable_core::dashboard::{Dashboard, DashboardHandle};
use durable_core::{OrchestrationContext, Runtime, orchestrator};

use crate::common::{lifetime, store};
use crate::dashboard_support::{request, request_with};

const WAIT: Duration = Duration::from_secs(30);

/// Waits for `go`.
#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.wait_event::<u64>("go").await)
}

/// The value of the `attribute="..."` that follows `after` in `html`.
fn attribute<'a>(html: &'a str, after: &str, attribute: &str) -> &'a str {
    let at = html
        .find(after)
        .unwrap_or_else(|| panic!("no {after} in {html}"));
    let rest = &html[at..];
    let start = rest.find(&format!("{attribute}=\"")).unwrap() + attribute.len() + 2;
    let end = start + rest[start..].find('"').unwrap();
    &rest[start..end]
}

#[test]
fn the_ids_dot_and_dot_dot_link_to_a_page_that_works() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(waits_for_go)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let mut instances = Vec::new();
        for id in [".", "..", "plain"] {
            instances.push(client.start(waits_for_go, id, ()).await.unwrap());
        }
        let dashboard = Dashboard::new(client.clone())
            .serve(([127, 0, 0, 1], 0))
            .await
            .unwrap();
        let addr = dashboard.local_addr();

        let list = request(addr, "GET", "/", None).await;
        assert_eq!(list.status, 200);
        for (id, href) in [
            (".", "/instance?id=."),
            ("..", "/instance?id=.."),
            ("plain", "/instances/plain"),
        ] {
            assert!(
                list.text().contains(&format!("href=\"{href}\">{id}<")),
                "no link {href} for {id}: {}",
                list.text()
            );
        }

        for (n, id) in [".", ".."].into_iter().enumerate() {
            let page = request(addr, "GET", &format!("/instance?id={id}"), None).await;
            let body = page.text();
            assert_eq!(page.status, 200, "{body}");
            assert!(
                body.contains(&format!("id=\"instance-id\">{id}<")),
                "{body}"
            );
            // Its own links and forms keep to the query form.
            let toggle = attribute(&body, "id=\"refresh-toggle\"", "href");
            assert_eq!(toggle, format!("/instance?id={id}&amp;refresh=on"));
            let action = attribute(&body, "id=\"raise-form\"", "action");
            assert_eq!(action, format!("/instance/actions/raise?id={id}"));
            let csrf = attribute(&body, "name=\"csrf\"", "value");

            let form = format!("csrf={csrf}&name=go&payload={n}");
            let raised = request(
                addr,
                "POST",
                &action.replace("&amp;", "&"),
                Some(("application/x-www-form-urlencoded", &form)),
            )
            .await;
            assert_eq!(raised.status, 303, "{}", raised.head);
            assert_eq!(
                raised.header("location"),
                Some(&*format!("/instance?id={id}"))
            );
        }
        for (n, instance) in instances.iter().take(2).enumerate() {
            assert_eq!(instance.wait(WAIT).await.unwrap(), n as u64);
        }
        // Without an id, a page that says so.
        assert_eq!(request(addr, "GET", "/instance", None).await.status, 400);
        dashboard.shutdown().await;
        runtime.shutdown().await;
    });
}

/// Serves a dashboard over `client` with `token`.
async fn with_token(client: &durable_core::Client, token: &str) -> DashboardHandle {
    Dashboard::new(client.clone())
        .token(token)
        .serve(([127, 0, 0, 1], 0))
        .await
        .unwrap()
}

#[test]
fn two_dashboards_on_one_host_keep_their_tokens_apart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(waits_for_go)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let first = with_token(&client, "first-secret").await;
        let second = with_token(&client, "second-secret").await;
        let dashboards = [
            (first.local_addr(), "first-secret"),
            (second.local_addr(), "second-secret"),
        ];

        // A browser's cookies for the host 127.0.0.1, whatever the port: the last cookie
        // of a name wins.
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        for (addr, token) in dashboards {
            let opened = request(addr, "GET", &format!("/?token={token}"), None).await;
            assert_eq!(opened.status, 303, "{}", opened.head);
            let cookie = opened.header("set-cookie").unwrap();
            let (name, value) = cookie.split(';').next().unwrap().split_once('=').unwrap();
            jar.insert(name.to_string(), value.to_string());
        }
        let cookies = jar
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        for (addr, _) in dashboards {
            let page = request_with(addr, "GET", "/", &[format!("Cookie: {cookies}")], None).await;
            assert_eq!(page.status, 200, "{addr}: {}", page.head);
        }
        first.shutdown().await;
        second.shutdown().await;
        runtime.shutdown().await;
    });
}
