//! Recovery markers (`StartOptions::max_recoveries`, see `runtime/dead_letter.rs`) do not
//! outlive their instance's run: removed when it completes, is terminated or is purged. A
//! dead-lettered instance cannot be suspended, only resumed (its count reset) or
//! terminated. `durable list --status dead-lettered` lists it, `durable resume` lets it go
//! on, and the dashboard shows it (badge, filter, what it means) and resumes it.

use std::time::{Duration, Instant};

use durable_core::record::{Commit, Status};
use durable_core::{
    Error, FjallStore, OrchestrationContext, StartOptions, StatusKind, Store, orchestrator,
};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);

#[orchestrator]
async fn wait_for_go(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    ctx.wait_event::<()>("go").await;
    Ok(())
}

fn marker_key(store: &FjallStore, id: &str) -> String {
    let incarnation = store.instance(id).unwrap().unwrap().incarnation;
    format!("~recoveries/{incarnation:x}/{id}")
}

fn marker(store: &FjallStore, id: &str) -> Option<Vec<u8>> {
    store.progress(&marker_key(store, id)).unwrap()
}

async fn until_status(store: &FjallStore, id: &str, kind: StatusKind) {
    let deadline = Instant::now() + WAIT;
    while store.instance(id).unwrap().unwrap().status.kind() != kind {
        assert!(Instant::now() < deadline, "{id} never {kind}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_goes_with_the_run_that_ends_or_is_purged() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(wait_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new().max_recoveries(3);
    client
        .start_with(wait_for_go, "a", (), options)
        .await
        .unwrap();
    assert!(marker(&store, "a").is_some(), "the start keeps its limit");

    client.terminate("a", "stop").await.unwrap();
    until_status(&store, "a", StatusKind::Terminated).await;
    assert_eq!(marker(&store, "a"), None, "terminated, its marker stays");

    let options = StartOptions::new().max_recoveries(2);
    client
        .start_with(wait_for_go, "b", (), options)
        .await
        .unwrap();
    client.raise_event("b", "go", &()).await.unwrap();
    until_status(&store, "b", StatusKind::Completed).await;
    assert_eq!(marker(&store, "b"), None, "completed, its marker stays");

    client.restart("a").await.unwrap();
    client.raise_event("a", "go", &()).await.unwrap();
    until_status(&store, "a", StatusKind::Completed).await;
    assert_eq!(marker(&store, "a"), None, "completed, its marker stays");

    // A marker an older version left on a finished instance goes with its purge.
    let key = marker_key(&store, "a");
    let left = Commit {
        progress: vec![(key.clone(), Some(vec![0, 1, 3, 0]))],
        ..Commit::default()
    };
    store.commit(&[left]).unwrap();
    client.purge("a").await.unwrap();
    assert_eq!(
        store.progress(&key).unwrap(),
        None,
        "purged, its marker stays"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_instance_is_resumed_not_suspended() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(wait_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    client.start(wait_for_go, "p", ()).await.unwrap();
    runtime.shutdown().await;
    park(&store, "p");
    let key = marker_key(&store, "p");

    let runtime = builder(store.clone())
        .orchestrator(wait_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let refused = client.suspend("p", "again").await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::InvalidState {
                status: StatusKind::DeadLettered,
                ..
            }
        ),
        "{refused}"
    );
    client.resume("p").await.unwrap();
    until_status(&store, "p", StatusKind::Running).await;
    assert_eq!(
        store.progress(&key).unwrap(),
        None,
        "resumed, its count stays"
    );
    client.raise_event("p", "go", &()).await.unwrap();
    until_status(&store, "p", StatusKind::Completed).await;
    runtime.shutdown().await;
}

/// Parks instance `id` of a stopped `store` as a runtime parks it
/// (`start_options_dead_letter.rs` crashes a worker for real): its status and its marker.
fn park(store: &FjallStore, id: &str) {
    let mut record = store.instance(id).unwrap().unwrap();
    record.status = Status::DeadLettered {
        reason: "its work was in flight at 3 crashes".into(),
    };
    let parked = Commit {
        instances: vec![(id.into(), record)],
        progress: vec![(marker_key(store, id), Some(vec![3, 0, 1, 2, 0]))],
        ..Commit::default()
    };
    store.commit(&[parked]).unwrap();
}

/// What one run of the CLI printed, and whether it ended well.
fn durable(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut line = vec!["durable", "--store", dir.to_str().unwrap()];
    line.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = durable_core::cli::run(line, &mut out, &mut err);
    let out = String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap();
    (code == std::process::ExitCode::SUCCESS, out)
}

#[test]
fn the_cli_lists_a_dead_lettered_instance_and_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(wait_for_go)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client.start(wait_for_go, "parked", ()).await.unwrap();
        client.start(wait_for_go, "other", ()).await.unwrap();
        runtime.shutdown().await;
    });
    park(&store, "parked");
    drop(store);

    let (ok, out) = durable(dir.path(), &["list", "--status", "dead-lettered", "--json"]);
    assert!(ok, "{out}");
    let list: durable_core::admin::view::InstanceList = serde_json::from_str(&out).unwrap();
    let rows: Vec<_> = (list.instances.iter())
        .map(|row| (row.id.as_str(), row.status.as_str()))
        .collect();
    assert_eq!(rows, [("parked", "dead-lettered")]);
    assert_eq!(list.counts.get("dead-lettered"), Some(&1), "{list:?}");
    let (ok, out) = durable(dir.path(), &["resume", "parked"]);
    assert!(ok, "{out}");

    // The next runtime applies the resume: running again, its count gone.
    let store = FjallStore::open(dir.path()).unwrap();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(wait_for_go)
            .start()
            .await
            .unwrap();
        until_status(&store, "parked", StatusKind::Running).await;
        assert_eq!(marker(&store, "parked"), None);
        runtime.shutdown().await;
    });
}

/// The dashboard: the JSON API lists it by its status, the list page offers the status in
/// its filter, the instance page says what it means, and the API's resume lets it go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_dead_lettered_instance_and_resumes_it() {
    use crate::dashboard_support::{json, request, serve};

    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(wait_for_go)
        .start()
        .await
        .unwrap();
    runtime.client().start(wait_for_go, "p", ()).await.unwrap();
    runtime.shutdown().await;
    park(&store, "p");
    let runtime = builder(store.clone())
        .orchestrator(wait_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let dashboard = serve(&client).await;
    let addr = dashboard.local_addr();

    let list = json(
        addr,
        "GET",
        "/api/instances?status=dead-lettered",
        None,
        200,
    )
    .await;
    let rows = list["instances"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(
        (&rows[0]["id"], &rows[0]["status"]),
        (&"p".into(), &"dead-lettered".into())
    );
    let page = request(addr, "GET", "/?status=dead-lettered", None)
        .await
        .text();
    assert!(
        page.contains(r#"<option value="dead-lettered" selected"#),
        "{page}"
    );
    assert!(page.contains("status-dead-lettered"), "{page}");
    let page = request(addr, "GET", "/instances/p", None).await.text();
    assert!(page.contains(r#"id="dead-lettered""#), "{page}");

    let ok = json(addr, "POST", "/api/instances/p/resume", Some("{}"), 200).await;
    assert_eq!(ok, serde_json::json!({ "ok": true }));
    until_status(&store, "p", StatusKind::Running).await;
    dashboard.shutdown().await;
    runtime.shutdown().await;
}

static PARKED_WORK_RAN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[durable_core::activity]
async fn parked_work(_ctx: durable_core::ActivityContext, _: ()) -> Result<(), String> {
    PARKED_WORK_RAN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

#[orchestrator]
async fn calls_parked_work(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    ctx.call(parked_work, ()).await.map_err(|e| e.to_string())
}

/// A resume whose turn's commit fails once (a passing store error) still runs the
/// activity task parked with the instance, once: the failed turn took it out of the
/// runtime's parked tasks, and the work taken over again after the failure runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_whose_commit_is_retried_still_runs_the_parked_work() {
    use durable_core::{Runtime, Unregistered};
    use durable_store::{Call, FaultyStore};

    let (_dir, store) = store();
    // Its activity's task is left in the store: this runtime has no such activity.
    let runtime = Runtime::builder(store.clone())
        .orchestrator(calls_parked_work)
        .on_unregistered(Unregistered::Wait)
        .start()
        .await
        .unwrap();
    (runtime.client())
        .start(calls_parked_work, "p", ())
        .await
        .unwrap();
    until_status(&store, "p", StatusKind::Stalled).await;
    runtime.shutdown().await;
    park(&store, "p");

    let faulty = FaultyStore::new(store.clone());
    let switch = faulty.switch();
    let runtime = Runtime::builder(faulty)
        .orchestrator(calls_parked_work)
        .activity(parked_work)
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(PARKED_WORK_RAN.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The client's commit goes through; the resume turn's fails once.
    let n = switch.count(Call::Commit);
    switch.fail(Call::Commit, n + 2, Some(n + 3));
    runtime.client().resume("p").await.unwrap();
    until_status(&store, "p", StatusKind::Completed).await;
    assert!(switch.injected() >= 1, "no commit failed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran = PARKED_WORK_RAN.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(ran, 1, "the parked task ran {ran} times");
    runtime.shutdown().await;
}
