//! Adversarial review of the dashboard and its admin API (issue 15): hostile instance
//! ids, payloads and messages in the pages, the API's refusals on every route, and a
//! raise whose payload the orchestrator's wait cannot decode.

use std::time::{Duration, Instant};

use crate::common::store;
use crate::dashboard_support::{encode, json, request, serve};
use durable_core::admin::view::InstanceDetail;
use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};

/// An id with every character a URL or HTML gives meaning to.
const HOSTILE_ID: &str = r#"<script>alert("id")</script> a/b?c=1&d#e%zz'"#;

#[activity]
async fn label(_ctx: ActivityContext, text: String) -> Result<String, String> {
    Ok(format!("<b onmouseover=alert(1)>{text}</b>"))
}

/// Shows a hostile custom status, calls an activity, then waits for `ship` (a string).
#[orchestrator]
async fn hostile(ctx: OrchestrationContext, text: String) -> Result<String, String> {
    ctx.set_custom_status(&format!("<img src=x onerror=alert('{text}')>"));
    let labelled = ctx.call(label, text).await?;
    let carrier: String = ctx.wait_event("ship").await;
    if carrier == "fail" {
        return Err("<script>alert('failure')</script>".to_string());
    }
    Ok(format!("{labelled} via {carrier}"))
}

/// A page's status, head and text.
async fn get_page(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let response = request(addr, "GET", path, None).await;
    let text = response.text();
    (response.status, response.head, text)
}

async fn detail(addr: std::net::SocketAddr, id: &str) -> InstanceDetail {
    let value = json(
        addr,
        "GET",
        &format!("/api/instances/{}", encode(id)),
        None,
        200,
    )
    .await;
    serde_json::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_payloads_show_as_text_and_link_back_to_themselves() {
    let (_dir, store) = store();
    let runtime = Runtime::builder(store)
        .orchestrator(hostile)
        .activity(label)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    client
        .start(hostile, HOSTILE_ID, "<i>x</i>".to_string())
        .await
        .unwrap();
    let dashboard = serve(&client).await;
    let addr = dashboard.local_addr();
    let page_path = format!("/instances/{}", encode(HOSTILE_ID));

    // Wait until its activity is done (then it waits for `ship`).
    let started = Instant::now();
    loop {
        let now = detail(addr, HOSTILE_ID).await;
        // (Then `pending.events` lists `ship`, once the turn that began the wait is in.)
        if (now.timeline.iter()).any(|row| row.name == "label" && row.outcome == "completed") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never waited: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The list links to the instance by its encoded id; no markup of the id escapes.
    let (status, _, list) = get_page(addr, "/?refresh=off").await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(&format!("href=\"{page_path}\"")), "{list}");
    assert!(!list.contains("<script>alert"), "{list}");

    // The instance page: the id, the custom status and the activity's output are text.
    let (status, _, page) = get_page(addr, &page_path).await;
    assert_eq!(status, 200, "{page}");
    for raw in ["<script>alert", "<img src=x", "<b onmouseover", "<i>x</i>"] {
        assert!(!page.contains(raw), "{raw} unescaped: {page}");
    }
    assert!(page.contains("&lt;script&gt;alert"), "{page}");
    // Its forms post back to the instance's own encoded path.
    assert!(
        page.contains(&format!("action=\"{page_path}/actions/raise\"")),
        "{page}"
    );

    // A running instance is not purged (409), and says so in JSON.
    let path = format!("/api/instances/{}/purge", encode(HOSTILE_ID));
    let error = json(addr, "POST", &path, Some("{}"), 409).await;
    assert!(error["error"].is_string(), "{error}");

    // A payload of the wrong type for the wait is set aside, not lost, nor fatal: the
    // instance still waits, and takes the next `ship` of the right type.
    let raise = format!("/api/instances/{}/raise", encode(HOSTILE_ID));
    json(
        addr,
        "POST",
        &raise,
        Some(r#"{"name": "ship", "payload": 42}"#),
        200,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = detail(addr, HOSTILE_ID).await;
    assert_eq!(waiting.summary.status, "running", "{waiting:?}");
    json(
        addr,
        "POST",
        &raise,
        Some(r#"{"name": "ship", "payload": "fail"}"#),
        200,
    )
    .await;
    let started = Instant::now();
    let failed = loop {
        let now = detail(addr, HOSTILE_ID).await;
        if now.summary.status != "running" {
            break now;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.summary.status, "failed", "{failed:?}");

    // The failure message is text too, in the list and on the page.
    let (_, _, list) = get_page(addr, "/?refresh=off").await;
    let (_, _, page) = get_page(addr, &page_path).await;
    for html in [&list, &page] {
        assert!(!html.contains("<script>alert('failure')"), "{html}");
        assert!(html.contains("&lt;script&gt;alert('failure')"), "{html}");
    }
    dashboard.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_refusal_is_a_json_error() {
    let (_dir, store) = store();
    let runtime = Runtime::builder(store)
        .orchestrator(hostile)
        .activity(label)
        .start()
        .await
        .unwrap();
    let dashboard = serve(&runtime.client()).await;
    let addr = dashboard.local_addr();

    // A page as large as a usize holds is no overflow; a cursor of no page is bad input.
    let max = format!("/api/instances?page_size={}", usize::MAX);
    json(addr, "GET", &max, None, 200).await;
    json(addr, "GET", "/api/entities?page_size=0", None, 200).await;
    json(addr, "GET", "/api/instances?after=not-a-cursor", None, 400).await;
    json(addr, "GET", "/api/instances?created_from_ms=-1", None, 400).await;
    json(
        addr,
        "POST",
        "/api/instances/x/raise",
        Some(r#"{"name": 5}"#),
        400,
    )
    .await;
    json(
        addr,
        "POST",
        "/api/purge",
        Some(r#"{"status": "lost"}"#),
        400,
    )
    .await;
    // An empty id is no instance id.
    json(addr, "GET", "/api/instances/%20", None, 404).await;

    // A route the API does not have, or a method a route does not take, answers in the
    // API's shape too: `durable --url` and scripts read `{"error": ...}`.
    let error = json(addr, "GET", "/api/instance/x", None, 404).await;
    assert!(error["error"].is_string(), "{error}");
    let error = json(addr, "GET", "/api/instances/x/raise", None, 405).await;
    assert!(error["error"].is_string(), "{error}");
    // Refusals axum makes before a handler runs: an id that is not UTF-8, a body over
    // the size limit.
    let error = json(addr, "GET", "/api/instances/%FF", None, 400).await;
    assert!(error["error"].is_string(), "{error}");
    let huge = format!(r#"{{"name": "go", "payload": "{}"}}"#, "x".repeat(3 << 20));
    let error = json(addr, "POST", "/api/instances/x/raise", Some(&huge), 413).await;
    assert!(error["error"].is_string(), "{error}");
    dashboard.shutdown().await;
}

/// Waits for `go`.
#[orchestrator]
async fn waits_to_go(ctx: OrchestrationContext, _input: ()) -> Result<(), String> {
    ctx.wait_event::<()>("go").await;
    Ok(())
}

// A client given its caller's context (`with_trace_context`) sends that context, even when
// a filter turns the client call's own span off and the current span is of another trace
// (an application quieting the library's spans, inside a request span of its own).
#[tokio::test]
async fn an_explicit_trace_context_wins_over_an_unrelated_current_span() {
    use durable_core::record::Event;
    use durable_core::{Store, TraceContext};
    use opentelemetry::trace::TracerProvider as _;
    use tracing::Instrument;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("review"))
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.name() != "client"
        }));
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(otel));

    let (_dir, store) = store();
    let runtime = Runtime::builder(store.clone())
        .orchestrator(waits_to_go)
        .start()
        .await
        .unwrap();
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let client = runtime
        .client()
        .with_trace_context(TraceContext::from_traceparent(header).unwrap());
    client
        .start(waits_to_go, "explicit", ())
        .instrument(tracing::info_span!("unrelated_request"))
        .await
        .unwrap();
    // The first turn moves the start's messages into the history.
    let started = Instant::now();
    let stored = loop {
        let stored: Vec<String> = (store.history("explicit").unwrap().into_iter())
            .filter_map(|event| match event {
                Event::TraceContext { traceparent, .. } => Some(traceparent),
                _ => None,
            })
            .collect();
        if !stored.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        &stored[0][3..35],
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace was replaced by the current span's: {stored:?}"
    );
    runtime.shutdown().await;
}

#[activity]
async fn flaky(ctx: ActivityContext, n: u32) -> Result<u32, String> {
    if n.is_multiple_of(50) && ctx.attempt() < 3 {
        return Err(format!("attempt {} of {n} failed", ctx.attempt()));
    }
    Ok(n)
}

/// `n` activities one after another, every fiftieth retried twice.
#[orchestrator]
async fn long_run(ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
    let policy = durable_core::RetryPolicy::fixed(3, Duration::from_millis(1));
    let mut sum = 0;
    for i in 0..n {
        sum += ctx.call_with_retry(flaky, i, policy.clone()).await?;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_of_a_long_instance_with_retries_renders() {
    let (_dir, store) = crate::common::store();
    let runtime = Runtime::builder(store)
        .orchestrator(long_run)
        .activity(flaky)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(long_run, "long", 300).await.unwrap();
    instance.wait(Duration::from_secs(60)).await.unwrap();
    let dashboard = serve(&client).await;
    let (status, _, page) = get_page(dashboard.local_addr(), "/instances/long").await;
    assert_eq!(status, 200, "{}", &page[..page.len().min(2000)]);
    let rows = page.matches("timeline-row kind-activity").count();
    // 300 calls, 6 of them (0, 50, ... 250) failing twice first: 312 attempts.
    assert_eq!(rows, 312, "timeline rows");
    assert_eq!(page.matches("×3 attempts").count(), 6);
    dashboard.shutdown().await;
}
