//! Review of the tools' client ([`Client::open`]), the admin API and the `durable` CLI:
//! reading never writes, and what a tool sends runs exactly once, in order, when a worker
//! takes it (on fjall the application's next start; on PostgreSQL the running fleet).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use durable_core::admin::Admin;
use durable_core::record::{Event, Status};
use durable_core::{
    ActivityContext, Client, OrchestrationContext, Runtime, RuntimeBuilder, Store, activity,
    orchestrator,
};
use durable_store::{PostgresStore, TestServer};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(30);

/// Counts the executions of [`rt_bump`].
#[derive(Debug, Default)]
struct Bumps(AtomicU32);

#[activity]
async fn rt_bump(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    ctx.state::<Arc<Bumps>>().0.fetch_add(1, Ordering::SeqCst);
    Ok(n + 1)
}

/// Bumps `n`, then waits for `go` and adds it.
#[orchestrator]
async fn rt_tally(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let bumped = ctx.call(rt_bump, n).await?;
    let go: u64 = ctx.wait_event("go").await;
    Ok(bumped + go)
}

/// Bumps `n`, then fails.
#[orchestrator]
async fn rt_flaky(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let bumped = ctx.call(rt_bump, n).await?;
    Err(format!("declined at {bumped}"))
}

fn runtime(store: impl Store, bumps: &Arc<Bumps>) -> RuntimeBuilder {
    Runtime::builder(store)
        .orchestrator(rt_tally)
        .orchestrator(rt_flaky)
        .activity(rt_bump)
        .state(bumps.clone())
}

/// What one run of the CLI printed.
#[derive(Debug)]
struct Run {
    code: ExitCode,
    out: String,
    err: String,
}

fn durable(store: &Path, args: &[&str]) -> Run {
    let mut line = vec!["durable", "--store", store.to_str().unwrap()];
    line.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = durable_core::cli::run(line, &mut out, &mut err);
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

/// Polls the store until `id`'s status satisfies `done`.
async fn until_status(client: &Client, id: &str, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(record) = client.record(id).await.unwrap()
            && done(&record.status)
        {
            return record.status;
        }
        assert!(Instant::now() < deadline, "`{id}` never got there");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_read_of_an_empty_directory_creates_no_store_there() {
    let dir = tempfile::tempdir().unwrap();
    for command in [&["list"][..], &["stats", "--json"], &["show", "x"]] {
        let run = durable(dir.path(), command);
        assert_eq!(run.code, ExitCode::from(1), "{run:?}");
        assert!(run.err.contains("no durable store at"), "{run:?}");
        assert!(run.out.is_empty(), "{run:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "`durable {command:?}` wrote {left:?}");
    }
    // A file where the store should be is named as what it is.
    let file = dir.path().join("durable");
    std::fs::write(&file, "not a store").unwrap();
    let run = durable(&file, &["list"]);
    assert_eq!(run.code, ExitCode::from(1), "{run:?}");
    assert!(run.err.contains("is not a directory"), "{run:?}");
}

#[test]
fn suspend_resume_and_restart_from_a_tool_run_once_each_when_the_application_starts() {
    let (_dir, store) = store();
    let bumps = Arc::new(Bumps::default());
    lifetime(async {
        let runtime = runtime(store.clone(), &bumps).start().await.unwrap();
        let client = runtime.client();
        client.start(rt_tally, "held", 1).await.unwrap();
        let flaky = client.start(rt_flaky, "flaky", 5).await.unwrap();
        flaky.wait(WAIT).await.unwrap_err();
        let bumped = |id| {
            (store.history(id).unwrap().iter())
                .any(|e| matches!(e, Event::ActivityCompleted { .. }))
        };
        while !bumped("held") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        runtime.shutdown().await;
    });
    assert_eq!(bumps.0.load(Ordering::SeqCst), 2);
    lifetime(async {
        let admin = Admin::new(Client::open(store.clone()).await.unwrap());
        admin.suspend("held", "maintenance").await.unwrap();
        admin
            .raise_event("held", "go", serde_json::json!(40))
            .await
            .unwrap();
        admin.restart("flaky").await.unwrap();
    });
    lifetime(async {
        let runtime = runtime(store.clone(), &bumps).start().await.unwrap();
        let client = runtime.client();
        until_status(&client, "held", |s| matches!(s, Status::Suspended { .. })).await;
        until_status(&client, "flaky", |s| matches!(s, Status::Failed { .. })).await;
        // The event waits for the resume.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = client.record("held").await.unwrap().unwrap().status;
        assert!(matches!(status, Status::Suspended { .. }), "{status:?}");
        runtime.shutdown().await;
    });
    assert_eq!(bumps.0.load(Ordering::SeqCst), 3, "the restart ran once");
    lifetime(async {
        let admin = Admin::new(Client::open(store.clone()).await.unwrap());
        admin.resume("held").await.unwrap();
    });
    lifetime(async {
        let runtime = runtime(store.clone(), &bumps).start().await.unwrap();
        let client = runtime.client();
        let held = client.instance(rt_tally, "held");
        assert_eq!(held.wait(WAIT).await.unwrap(), 42);
        runtime.shutdown().await;
    });
    assert_eq!(bumps.0.load(Ordering::SeqCst), 3, "each activity ran once");
    let kinds: Vec<&str> = (store.history("held").unwrap().iter())
        .filter_map(|e| match e {
            Event::SuspendRequested { .. } => Some("suspend"),
            Event::ResumeRequested => Some("resume"),
            Event::EventRaised { .. } => Some("raised"),
            Event::Completed { .. } => Some("completed"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["suspend", "resume", "raised", "completed"]);
}

#[test]
fn on_postgres_a_restart_from_a_tool_runs_promptly_on_the_running_fleet() {
    let database = TestServer::shared().database();
    let bumps = Arc::new(Bumps::default());
    lifetime(async {
        let runtime = runtime(PostgresStore::open(database.url()).unwrap(), &bumps)
            .lease(Duration::from_secs(60))
            .start()
            .await
            .unwrap();
        let flaky = runtime.client().start(rt_flaky, "flaky", 5).await.unwrap();
        flaky.wait(WAIT).await.unwrap_err();
        let tool = Client::open(PostgresStore::open(database.url()).unwrap())
            .await
            .unwrap();
        let admin = Admin::new(tool.clone());
        admin.restart("flaky").await.unwrap();
        // Well within the lease: the fleet takes it at once, not when a lease lapses.
        let started = Instant::now();
        loop {
            if bumps.0.load(Ordering::SeqCst) == 2
                && matches!(
                    tool.record("flaky").await.unwrap().unwrap().status,
                    Status::Failed { .. }
                )
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the restart did not run: {:?}",
                tool.record("flaky").await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        runtime.shutdown().await;
    });
    assert_eq!(bumps.0.load(Ordering::SeqCst), 2);
}

#[test]
fn bad_input_gives_one_line_and_an_exit_code_never_a_panic() {
    let (dir, store) = store();
    drop(store);
    let one_line = |run: Run, code: u8| {
        assert_eq!(run.code, ExitCode::from(code), "{run:?}");
        assert!(run.out.is_empty(), "{run:?}");
        assert_eq!(run.err.trim_end().lines().count(), 1, "{run:?}");
        assert!(run.err.starts_with("error: "), "{run:?}");
    };
    one_line(durable(dir.path(), &["list", "--status", "bogus"]), 2);
    one_line(durable(dir.path(), &["list", "--after", "not-a-cursor"]), 2);
    one_line(durable(dir.path(), &["show", "nope"]), 1);
    one_line(durable(dir.path(), &["history", "nope", "--json"]), 1);
    one_line(durable(dir.path(), &["raise", "nope", "go", "{bad"]), 2);
    one_line(durable(dir.path(), &["raise", "nope", "go", "1"]), 1);
    one_line(durable(dir.path(), &["terminate", "nope"]), 1);
    one_line(durable(dir.path(), &["restart", "nope"]), 1);
    one_line(durable(dir.path(), &["purge", "--status", "running"]), 1);
    let export = dir.path().join("x.history");
    one_line(
        durable(dir.path(), &["export", "nope", export.to_str().unwrap()]),
        1,
    );
    assert!(!export.exists());
    // A server that refuses the connection.
    let started = Instant::now();
    let mut line = vec![
        "durable",
        "--store",
        "postgres://u:pw@127.0.0.1:1/db",
        "list",
    ];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = durable_core::cli::run(line.drain(..), &mut out, &mut err);
    let run = Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    };
    assert!(!run.err.contains("pw"), "{run:?}");
    one_line(run, 1);
    assert!(started.elapsed() < Duration::from_secs(15));
}
