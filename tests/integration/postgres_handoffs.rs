//! What becomes of work one worker holds for an instance another worker holds, on
//! PostgreSQL: an activity task whose input the worker that claimed it cannot decode, and
//! a timer of a run that was restarted through another worker.

use std::time::Duration;

use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};
use durable_store::{PostgresStore, Status, Store, TestDatabase, TestServer, WorkItem};

use crate::common::lifetime;

const WAIT: Duration = Duration::from_secs(30);

fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::open(database.url()).unwrap()
}

/// The workers holding the store's work items, by item kind (`message`, `timer`,
/// `activity`).
/// (On a thread of its own: the blocking client may not run on the tests' tokio runtime.)
fn holders(database: &TestDatabase) -> Vec<(String, Option<i64>)> {
    let url = database.url().to_owned();
    std::thread::spawn(move || {
        let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        sql.query("SELECT kind, held_by FROM durable.work ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    })
    .join()
    .unwrap()
}

/// The activity `typed` as the orchestrator calls it: its input is a number.
#[activity(name = "typed")]
async fn typed_number(_ctx: ActivityContext, x: u64) -> Result<u64, String> {
    Ok(x + 1)
}

/// The activity `typed` in older code: its input was a text, so a number does not decode.
#[activity(name = "typed")]
async fn typed_text(_ctx: ActivityContext, x: String) -> Result<u64, String> {
    Ok(x.len() as u64)
}

#[orchestrator]
async fn calls_typed(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(typed_number, x).await?)
}

/// Suspicion: the task of an activity whose input the worker that claimed it cannot
/// decode, for an instance another worker holds, is dropped. It is not: it stays in the
/// store, held by that worker, and the instance waits for it (neither failed nor stalled);
/// once that worker leaves (the old code of a rolling deploy goes), a worker whose code
/// reads the input runs it and the instance completes.
#[test]
fn an_undecodable_task_for_an_instance_held_elsewhere_waits_for_code_that_reads_it() {
    let database = TestServer::shared().database();
    lifetime(async {
        // `holder` runs the orchestrator and lacks the activity; `old` has the activity
        // with the old input type.
        let holder = Runtime::builder(open(&database))
            .orchestrator(calls_typed)
            .lease(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        let old = Runtime::builder(open(&database))
            .activity(typed_text)
            .lease(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        holder.client().start(calls_typed, "x", 41).await.unwrap();
        let store = open(&database);
        // `old` claimed the task and could not decode it.
        let old_holds_the_task = || {
            holders(&database)
                .iter()
                .any(|(kind, held_by)| kind == "activity" && held_by.is_some())
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while !old_holds_the_task() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the task was never claimed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let task = store.work_items().unwrap();
        assert!(
            matches!(&task[..], [(_, WorkItem::Activity(task))] if task.activity == "typed"),
            "the task is kept in the store, not dropped: {task:?}"
        );
        let record = store.instance("x").unwrap().unwrap();
        assert!(
            matches!(record.status, Status::Running),
            "the instance waits for the task: {:?}",
            record.status
        );
        // The old code goes; the new code reads the input.
        old.shutdown().await;
        let new = Runtime::builder(open(&database))
            .activity(typed_number)
            .lease(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        let x = holder.client().instance(calls_typed, "x");
        assert_eq!(x.wait(WAIT).await.unwrap(), 42);
        holder.shutdown().await;
        new.shutdown().await;
    });
    assert_eq!(open(&database).work_items().unwrap(), vec![]);
}

/// Sleeps `ms` milliseconds on a durable timer.
#[orchestrator]
async fn napper(ctx: OrchestrationContext, ms: u64) -> Result<u64, String> {
    ctx.sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// A message (here a timer) that worker A holds for an instance that was then restarted
/// through worker B, before A delivered it, is for a run that is over: when it fires, A
/// removes it from the store at once (it used to stay there, held by A, until A left). The
/// new run is not disturbed.
#[test]
fn a_timer_of_a_run_restarted_through_another_worker_is_removed_when_it_fires() {
    let database = TestServer::shared().database();
    let timers = |database: &TestDatabase| {
        holders(database)
            .into_iter()
            .filter(|(kind, _)| kind == "timer")
            .count()
    };
    lifetime(async {
        let worker = || {
            Runtime::builder(open(&database))
                .orchestrator(napper)
                .lease(Duration::from_secs(2))
        };
        let a = worker().start().await.unwrap();
        let b = worker().start().await.unwrap();
        // On `a`, with its timer armed there; terminated there, and restarted through `b`
        // before the timer fires.
        let x = a.client().start(napper, "x", 1_500).await.unwrap();
        while timers(&database) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        x.terminate("again").await.unwrap();
        let store = open(&database);
        while !store.instance("x").unwrap().unwrap().status.is_terminal() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b.client().restart("x").await.unwrap();
        // The new run, on `b`, sleeps as long: the old timer fired on `a` before it ends.
        let x = b.client().instance(napper, "x");
        assert_eq!(x.wait(WAIT).await.unwrap(), 1_500);
        let deadline = tokio::time::Instant::now() + WAIT;
        while timers(&database) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the old run's timer stayed held by `a` while `a` lives"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}
