//! The dashboard's JSON API over a socket, as `durable --url` calls it: reads in the
//! shapes of `durable_core::admin::view`, requests, the export a replay test loads, and
//! the typed errors.

use std::time::{Duration, Instant};

use crate::common::store;
use crate::dashboard_support::{json, request, serve};
use durable_core::admin::view::{HistoryRow, InstanceDetail, InstanceList, Stats};
use durable_core::replay_test::SavedHistory;
use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};

#[activity]
async fn weigh(_ctx: ActivityContext, grams: u32) -> Result<u32, String> {
    Ok(grams + 1)
}

/// One activity, then waits for `ship`.
#[orchestrator]
async fn parcel(ctx: OrchestrationContext, grams: u32) -> Result<String, String> {
    let weight = ctx.call(weigh, grams).await?;
    let carrier: String = ctx.wait_event("ship").await;
    Ok(format!("{weight} g with {carrier}"))
}

async fn get_json<T: serde::de::DeserializeOwned>(addr: std::net::SocketAddr, path: &str) -> T {
    serde_json::from_value(json(addr, "GET", path, None, 200).await).unwrap()
}

async fn post_json(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let response = request(addr, "POST", path, Some(("application/json", body))).await;
    (response.status, response.json(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_reads_steers_and_exports_an_instance() {
    let (_dir, store) = store();
    let runtime = Runtime::builder(store)
        .orchestrator(parcel)
        .activity(weigh)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    client.start(parcel, "parcel-1", 500).await.unwrap();
    let dashboard = serve(&client).await;
    let addr = dashboard.local_addr();

    let list: InstanceList =
        get_json(addr, "/api/instances?orchestrator=parcel&page_size=10").await;
    assert_eq!(list.instances.len(), 1, "{list:?}");
    assert_eq!(list.instances[0].id, "parcel-1");
    let empty: InstanceList = get_json(addr, "/api/instances?status=failed&orchestrator=").await;
    assert!(empty.instances.is_empty(), "{empty:?}");

    // Wait until its activity is done, then raise `ship` through the API.
    let started = Instant::now();
    loop {
        let detail: InstanceDetail = get_json(addr, "/api/instances/parcel-1").await;
        if (detail.timeline.iter()).any(|row| row.name == "weigh" && row.outcome == "completed") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never waited: {detail:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, ok) = post_json(
        addr,
        "/api/instances/parcel-1/raise",
        r#"{"name": "ship", "payload": "post"}"#,
    )
    .await;
    assert_eq!((status, ok), (200, serde_json::json!({ "ok": true })));
    let instance = client.instance(parcel, "parcel-1");
    assert_eq!(
        instance.wait(Duration::from_secs(10)).await.unwrap(),
        "501 g with post"
    );

    let detail: InstanceDetail = get_json(addr, "/api/instances/parcel-1").await;
    assert_eq!(detail.summary.status, "completed");
    assert_eq!(detail.output, Some(serde_json::json!("501 g with post")));
    let history: Vec<HistoryRow> = get_json(addr, "/api/instances/parcel-1/history").await;
    let scheduled = history
        .iter()
        .find(|row| row.kind == "ActivityScheduled")
        .expect("the activity in the history");
    let site = scheduled.site.as_ref().expect("its await site");
    assert!(site.file.ends_with("dashboard_api.rs"), "{site:?}");
    let stats: Stats = get_json(addr, "/api/stats").await;
    assert_eq!(stats.counts.get("completed"), Some(&1), "{stats:?}");
    let entities: serde_json::Value = get_json(addr, "/api/entities").await;
    assert_eq!(entities["entities"], serde_json::json!([]));

    // The export is the file `SavedHistory::save` writes.
    let export = request(addr, "GET", "/api/instances/parcel-1/export", None).await;
    assert_eq!(export.status, 200);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), export.body).unwrap();
    let saved = SavedHistory::load(file.path()).unwrap();
    assert_eq!(
        (saved.instance.as_str(), saved.orchestrator.as_str()),
        ("parcel-1", "parcel")
    );

    // Refusals, typed: a finished instance cannot be terminated (409), nor an unknown one
    // read (404); an unknown status is bad input (400).
    let (status, error) = post_json(
        addr,
        "/api/instances/parcel-1/terminate",
        r#"{"reason": "late"}"#,
    )
    .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("parcel-1"),
        "{error}"
    );
    json(addr, "GET", "/api/instances/nobody", None, 404).await;
    json(addr, "GET", "/api/instances?status=lost", None, 400).await;

    let (status, purged) = post_json(addr, "/api/purge", r#"{"status": "completed"}"#).await;
    assert_eq!((status, purged), (200, serde_json::json!({ "purged": 1 })));
    json(addr, "GET", "/api/instances/parcel-1", None, 404).await;
    dashboard.shutdown().await;
}
