//! The schedules in the dashboard (issue 16): the JSON API under `/api/schedules` (as
//! `durable --url` calls it), the pages' escaping and links, and their forms with CSRF.

use std::time::Duration;

use durable_core::ManualClock;
use durable_core::admin::view::{ScheduleDetail, ScheduleList};
use durable_core::schedule::{OverlapPolicy, run_id};

use crate::common::lifetime;
use crate::dashboard_support::{encode, json, request, serve};
use crate::schedule_views::{runtime, tick, two_schedules, until};

fn attribute<'a>(html: &'a str, after: &str, attribute: &str) -> &'a str {
    let at = html
        .find(after)
        .unwrap_or_else(|| panic!("no {after} in {html}"));
    let rest = &html[at..];
    let start = rest.find(&format!("{attribute}=\"")).unwrap() + attribute.len() + 2;
    let end = start + rest[start..].find('"').unwrap();
    &rest[start..end]
}

/// The CLI over the admin API at `url`, run off the async runtime.
async fn durable_url(url: &str, args: &[&str]) -> (std::process::ExitCode, String, String) {
    let mut line = vec!["durable".to_string(), "--url".into(), url.to_string()];
    line.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = durable_core::cli::run(line, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    })
    .await
    .unwrap()
}

#[test]
fn the_api_and_the_pages_show_and_operate_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(tick(0) + Duration::from_secs(1));
    lifetime(async {
        let runtime = runtime(dir.path(), &clock).await;
        let client = runtime.client();
        two_schedules(&client, &clock).await;
        let dashboard = serve(&client).await;
        let addr = dashboard.local_addr();

        // Reads.
        let list: ScheduleList =
            serde_json::from_value(json(addr, "GET", "/api/schedules", None, 200).await).unwrap();
        assert_eq!(list.schedules.len(), 2, "{list:?}");
        let page: ScheduleList = serde_json::from_value(
            json(
                addr,
                "GET",
                "/api/schedules?page_size=1&after=held",
                None,
                200,
            )
            .await,
        )
        .unwrap();
        assert_eq!(page.schedules[0].id, "nightly", "{page:?}");
        let detail: ScheduleDetail =
            serde_json::from_value(json(addr, "GET", "/api/schedules/nightly", None, 200).await)
                .unwrap();
        assert_eq!(
            detail.recent_runs[0].instance_id,
            run_id("nightly", tick(1))
        );
        let missing = json(addr, "GET", "/api/schedules/nope", None, 404).await;
        assert!(
            missing["error"].as_str().unwrap().contains("nope"),
            "{missing}"
        );

        // The CLI over the API reads the same views.
        let (code, out, err) =
            durable_url(dashboard.url(), &["schedules", "show", "nightly", "--json"]).await;
        assert_eq!(code, std::process::ExitCode::SUCCESS, "{err}");
        let over_api: ScheduleDetail = serde_json::from_str(&out).unwrap();
        assert_eq!(over_api, detail);
        let (code, _, err) = durable_url(dashboard.url(), &["schedules", "trigger", "nope"]).await;
        assert_eq!(code, std::process::ExitCode::from(1));
        assert!(err.contains("no schedule `nope`"), "{err}");

        // Requests. (A trigger's run is named by the time it is handled: not tick 1's,
        // which ran.)
        clock.set(tick(1) + Duration::from_secs(30));
        let nightly = client.schedule("nightly");
        json(
            addr,
            "POST",
            "/api/schedules/nightly/pause",
            Some(r#"{"note":"api"}"#),
            200,
        )
        .await;
        until("paused through the API", || async {
            nightly.describe(1).await.unwrap().paused.as_deref() == Some("api")
        })
        .await;
        json(
            addr,
            "POST",
            "/api/schedules/nightly/unpause",
            Some("{}"),
            200,
        )
        .await;
        until("unpaused through the API", || async {
            nightly.describe(1).await.unwrap().paused.is_none()
        })
        .await;
        let body = r#"{"from_ms": 1, "to_ms": 0, "overlap": "allow_all"}"#;
        json(
            addr,
            "POST",
            "/api/schedules/nightly/backfill",
            Some(body),
            400,
        )
        .await;
        let body = r#"{"from_ms": 0, "to_ms": 60000, "overlap": "never"}"#;
        json(
            addr,
            "POST",
            "/api/schedules/nightly/backfill",
            Some(body),
            400,
        )
        .await;
        json(addr, "POST", "/api/schedules/nope/trigger", Some("{}"), 404).await;
        let (code, out, err) = durable_url(
            dashboard.url(),
            &["schedules", "trigger", "nightly", "--json"],
        )
        .await;
        assert_eq!(code, std::process::ExitCode::SUCCESS, "{err}");
        assert_eq!(out.trim().replace([' ', '\n'], ""), r#"{"ok":true}"#);
        until("triggered through the CLI over the API", || async {
            nightly.describe(1).await.unwrap().started == 2
        })
        .await;

        // The pages: the note is text, never markup; the runs link to their instances.
        let page = request(addr, "GET", "/schedules", None).await;
        let html = page.text();
        assert_eq!(page.status, 200, "{html}");
        assert!(
            html.contains("&lt;b&gt;until&lt;/b&gt; the migration"),
            "{html}"
        );
        assert!(!html.contains("<b>until</b>"), "{html}");
        assert!(html.contains("href=\"/schedules/nightly\""), "{html}");
        assert!(
            html.contains("href=\"/schedules\""),
            "the nav links the page: {html}"
        );
        let page = request(addr, "GET", "/schedules/nightly", None).await;
        let html = page.text();
        assert_eq!(page.status, 200, "{html}");
        let run = run_id("nightly", tick(1));
        assert!(
            html.contains(&format!("href=\"/instances/{}\"", encode(&run))),
            "{html}"
        );
        let page = request(addr, "GET", "/schedules/held", None).await;
        assert!(!page.text().contains("<b>until</b>"), "{}", page.text());
        assert_eq!(
            request(addr, "GET", "/schedules/nope", None).await.status,
            404
        );

        // The forms: CSRF required, delete confirmed.
        let html = request(addr, "GET", "/schedules/nightly", None)
            .await
            .text();
        let csrf = attribute(&html, "name=\"csrf\"", "value").to_string();
        let form = |path: &str, body: String| {
            let path = path.to_string();
            async move {
                request(
                    addr,
                    "POST",
                    &path,
                    Some(("application/x-www-form-urlencoded", &body)),
                )
                .await
            }
        };
        let refused = form(
            "/schedules/nightly/actions/pause",
            "csrf=wrong&note=x".into(),
        )
        .await;
        assert_eq!(refused.status, 403);
        let paused = form(
            "/schedules/nightly/actions/pause",
            format!("csrf={csrf}&note=%3Ci%3Eform%3C%2Fi%3E"),
        )
        .await;
        assert_eq!(paused.status, 303, "{}", paused.head);
        assert_eq!(paused.header("location"), Some("/schedules/nightly"));
        until("paused through the form", || async {
            nightly.describe(1).await.unwrap().paused.as_deref() == Some("<i>form</i>")
        })
        .await;
        let html = request(addr, "GET", "/schedules/nightly", None)
            .await
            .text();
        assert!(
            html.contains("&lt;i&gt;form&lt;/i&gt;") && !html.contains("<i>form"),
            "{html}"
        );
        let backfill = form(
            "/schedules/nightly/actions/backfill",
            format!("csrf={csrf}&from=2023-11-14T22%3A10&to=2023-11-14T22%3A12&overlap=allow_all"),
        )
        .await;
        assert_eq!(backfill.status, 303, "{}", backfill.head);
        let unconfirmed = form("/schedules/nightly/actions/delete", format!("csrf={csrf}")).await;
        assert_eq!(unconfirmed.header("location"), Some("/schedules/nightly"));
        assert!(client.schedule("nightly").describe(1).await.is_ok());
        let deleted = form(
            "/schedules/nightly/actions/delete",
            format!("csrf={csrf}&confirm=yes"),
        )
        .await;
        assert_eq!(deleted.status, 303, "{}", deleted.head);
        assert_eq!(deleted.header("location"), Some("/schedules"));
        until("deleted through the form", || async {
            nightly.describe(1).await.is_err()
        })
        .await;
        json(addr, "POST", "/api/schedules/held/delete", Some("{}"), 200).await;
        until("deleted through the API", || async {
            client.schedule("held").describe(1).await.is_err()
        })
        .await;
        let list: ScheduleList =
            serde_json::from_value(json(addr, "GET", "/api/schedules", None, 200).await).unwrap();
        assert!(list.schedules.is_empty(), "{list:?}");
        dashboard.shutdown().await;
        runtime.shutdown().await;
    });
}

/// Schedule ids `.` and `..`, which a browser drops from a path (`%2E` too): the list
/// links them under `/schedule?id=`, and their page's forms post under
/// `/schedule/actions/{action}?id=`, which work.
#[test]
fn schedules_named_dot_and_dot_dot_have_working_pages_and_forms() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(tick(0) + Duration::from_secs(1));
    lifetime(async {
        let runtime = runtime(dir.path(), &clock).await;
        let client = runtime.client();
        for id in [".", ".."] {
            let schedule = crate::schedule_views::every_minute(id, OverlapPolicy::Skip);
            client.create_schedule(id, schedule).await.unwrap();
        }
        let dashboard = serve(&client).await;
        let addr = dashboard.local_addr();

        let html = request(addr, "GET", "/schedules", None).await.text();
        assert!(html.contains("href=\"/schedule?id=.\""), "{html}");
        assert!(html.contains("href=\"/schedule?id=..\""), "{html}");
        for id in [".", ".."] {
            let page = request(addr, "GET", &format!("/schedule?id={id}"), None).await;
            let html = page.text();
            assert_eq!(page.status, 200, "{html}");
            assert!(
                html.contains(&format!("<code id=\"schedule-id\">{id}</code>")),
                "{html}"
            );
            let action = format!("/schedule/actions/pause?id={id}");
            assert!(html.contains(&format!("action=\"{action}\"")), "{html}");
            let csrf = attribute(&html, "name=\"csrf\"", "value").to_string();
            let body = format!("csrf={csrf}&note=dots");
            let form = Some(("application/x-www-form-urlencoded", body.as_str()));
            let paused = request(addr, "POST", &action, form).await;
            assert_eq!(paused.status, 303, "{}", paused.head);
            assert_eq!(
                paused.header("location"),
                Some(format!("/schedule?id={id}").as_str())
            );
            let handle = client.schedule(id);
            until("paused through the form", || async {
                handle.describe(1).await.unwrap().paused.as_deref() == Some("dots")
            })
            .await;
        }
        for id in [".", ".."] {
            let (code, out, err) =
                durable_url(dashboard.url(), &["schedules", "show", id, "--json"]).await;
            assert_eq!(code, std::process::ExitCode::SUCCESS, "{err}");
            let detail: ScheduleDetail = serde_json::from_str(&out).unwrap();
            assert_eq!(detail.id, id);
        }
        let missing = request(addr, "GET", "/schedule", None).await;
        assert_eq!(missing.status, 400, "{}", missing.text());
        dashboard.shutdown().await;
        runtime.shutdown().await;
    });
}
