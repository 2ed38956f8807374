//! Dead-letter (`RuntimeBuilder::max_recoveries`): a child process of this test binary
//! runs a poison instance, whose activity aborts the process, beside an innocent one,
//! whose activity takes a while. The test restarts the child until the poison instance
//! is parked (suspended as dead-lettered) and the innocent one has completed; an
//! operator's resume then lets the poison's work run again at the next start. The same
//! holds with the limit given by each start (`StartOptions::max_recoveries`) instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use durable_core::record::Status;
use durable_core::{
    ActivityContext, Client, FjallStore, OrchestrationContext, Runtime, StartOptions, Store,
    activity, orchestrator,
};

const DIR: &str = "DURABLE_DEAD_LETTER_DIR";
const PHASE: &str = "DURABLE_DEAD_LETTER_PHASE";
/// `runtime` for the builder's limit, `start` for each start's.
const LIMIT_BY: &str = "DURABLE_DEAD_LETTER_LIMIT_BY";
const LIMIT: u32 = 2;

#[activity]
async fn poison(_ctx: ActivityContext, _: ()) -> Result<(), String> {
    // Past every catch_unwind: the process dies, as with a segfault in a native library.
    std::process::abort();
}

#[activity]
async fn slow_ok(_ctx: ActivityContext, n: u32) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(n + 1)
}

#[orchestrator]
async fn poisoned(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    ctx.call(poison, ()).await.map_err(|e| e.to_string())
}

#[orchestrator]
async fn innocent(ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
    ctx.call(slow_ok, n).await.map_err(|e| e.to_string())
}

fn status(store: &FjallStore, id: &str) -> Status {
    store.instance(id).unwrap().unwrap().status
}

/// The child process: starts both instances (a start of an existing id does nothing),
/// then waits until the innocent one completed and the poison one is parked, or, in the
/// phase after a resume, until the poison's work runs again (and aborts).
#[test]
#[ignore = "the child process of a_poison_instance_is_parked_and_an_innocent_one_completes"]
fn dead_letter_child() {
    let (Ok(dir), Ok(phase), Ok(by)) = (
        std::env::var(DIR),
        std::env::var(PHASE),
        std::env::var(LIMIT_BY),
    ) else {
        return;
    };
    let store = FjallStore::open(PathBuf::from(dir).join("durable")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut builder = Runtime::builder(store.clone())
            .orchestrator(poisoned)
            .orchestrator(innocent)
            .activity(poison)
            .activity(slow_ok);
        let mut options = StartOptions::new();
        if by == "runtime" {
            builder = builder.max_recoveries(LIMIT);
        } else {
            options = options.max_recoveries(LIMIT);
        }
        let runtime = builder.start().await.unwrap();
        let client = runtime.client();
        (client.start_with(innocent, "innocent", 1, options))
            .await
            .unwrap();
        (client.start_with(poisoned, "poison", (), options))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let done = matches!(status(&store, "innocent"), Status::Completed { .. });
            let parked = matches!(status(&store, "poison"), Status::Suspended { .. });
            if phase == "run" && done && parked {
                runtime.shutdown().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "phase {phase}: innocent {:?}, poison {:?}",
            status(&store, "innocent"),
            status(&store, "poison")
        );
    });
}

fn child(dir: &Path, phase: &str, by: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "start_options_dead_letter::dead_letter_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR, dir)
        .env(PHASE, phase)
        .env(LIMIT_BY, by)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
}

/// Whether the child died of a signal (the abort), not of a failed assertion.
fn aborted(status: std::process::ExitStatus) -> bool {
    !status.success() && status.code().is_none()
}

#[test]
fn a_poison_instance_is_parked_and_an_innocent_one_completes() {
    parks_the_poison_only("runtime");
}

#[test]
fn a_limit_given_by_the_start_parks_as_the_runtime_one_does() {
    parks_the_poison_only("start");
}

fn parks_the_poison_only(by: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut crashes = 0;
    loop {
        let status = child(dir.path(), "run", by);
        if status.success() {
            break;
        }
        assert!(
            aborted(status),
            "the child failed without a crash: {status}"
        );
        crashes += 1;
        assert!(crashes <= 2 * LIMIT as usize + 1, "never parked");
    }
    eprintln!("crashes before the poison instance was parked: {crashes}");
    // The first run and `LIMIT` recoveries crashed; the runs before it was parked.
    assert!(crashes > LIMIT as usize, "parked after {crashes} crashes");

    let store = FjallStore::open(dir.path().join("durable")).unwrap();
    match status(&store, "poison") {
        Status::Suspended { reason } => assert!(reason.contains("dead-lettered"), "{reason}"),
        other => panic!("poison not parked: {other:?}"),
    }
    assert!(matches!(
        status(&store, "innocent"),
        Status::Completed { .. }
    ));
    // Parked, it stays parked at the next start, its work not run: the child ends well.
    drop(store);
    assert!(child(dir.path(), "run", by).success());

    // An operator resumes it (the CLI's `durable resume`, through a tool's client): its
    // work runs again at the next start, and crashes it again.
    let store = FjallStore::open(dir.path().join("durable")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::open(store).await.unwrap();
        client.resume("poison").await.unwrap();
    });
    drop(rt);
    assert!(aborted(child(dir.path(), "resumed", by)));
}
