//! The dashboard's links and cookie as a browser uses them: the instance ids `.` and `..`
//! (a browser drops such a path segment, `%2E` too) link to `/instance?id=...`, whose
//! page and actions work; and the token's cookie of one dashboard does not log out
//! another on another port of the same host (a browser sends a host's cookies to all its
//! ports).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use durable_core::dashboard::{Dashboard, DashboardHandle};
use durable_core::{OrchestrationContext, Runtime, orchestrator};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(30);

/// Waits for `go`.
#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.wait_event::<u64>("go").await)
}

/// An answer: its status, headers (names in lower case) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to `addr`, with `headers` (`Name: value` lines) and `body`.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[String], body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    // Chunked bodies keep their chunk sizes: the tests only look for text in them.
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, "GET", path, &[], "")
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

        let list = get(addr, "/");
        assert_eq!(list.status, 200);
        for (id, href) in [
            (".", "/instance?id=."),
            ("..", "/instance?id=.."),
            ("plain", "/instances/plain"),
        ] {
            assert!(
                list.body.contains(&format!("href=\"{href}\">{id}<")),
                "no link {href} for {id}: {}",
                list.body
            );
        }

        for (n, id) in [".", ".."].into_iter().enumerate() {
            let page = get(addr, &format!("/instance?id={id}"));
            assert_eq!(page.status, 200, "{page:?}");
            assert!(
                page.body.contains(&format!("id=\"instance-id\">{id}<")),
                "{}",
                page.body
            );
            // Its own links and forms keep to the query form.
            let toggle = attribute(&page.body, "id=\"refresh-toggle\"", "href");
            assert_eq!(toggle, format!("/instance?id={id}&amp;refresh=on"));
            let action = attribute(&page.body, "id=\"raise-form\"", "action");
            assert_eq!(action, format!("/instance/actions/raise?id={id}"));
            let csrf = attribute(&page.body, "name=\"csrf\"", "value");

            let raised = send(
                addr,
                "POST",
                &action.replace("&amp;", "&"),
                &["Content-Type: application/x-www-form-urlencoded".to_string()],
                &format!("csrf={csrf}&name=go&payload={n}"),
            );
            assert_eq!(raised.status, 303, "{raised:?}");
            assert_eq!(
                raised.header("location"),
                Some(&*format!("/instance?id={id}"))
            );
        }
        for (n, instance) in instances.iter().take(2).enumerate() {
            assert_eq!(instance.wait(WAIT).await.unwrap(), n as u64);
        }
        // Without an id, a page that says so.
        assert_eq!(get(addr, "/instance").status, 400);
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
            let opened = get(addr, &format!("/?token={token}"));
            assert_eq!(opened.status, 303, "{opened:?}");
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
            let page = send(addr, "GET", "/", &[format!("Cookie: {cookies}")], "");
            assert_eq!(page.status, 200, "{addr}: {page:?}");
        }
        first.shutdown().await;
        second.shutdown().await;
        runtime.shutdown().await;
    });
}
