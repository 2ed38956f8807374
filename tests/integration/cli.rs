//! The `durable` CLI, run in-process (`durable_core::cli::run`) over a fjall store that a
//! runtime filled and then released: what it reads, what its requests do once a runtime
//! runs again, and what it says about a store another runtime holds.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use durable_core::admin::view::{EntityList, HistoryRow, InstanceDetail, InstanceList, Stats};
use durable_core::replay_test::{self, SavedHistory};
use durable_core::{
    ActivityContext, FjallStore, OrchestrationContext, Runtime, RuntimeBuilder, Store, activity,
    orchestrator,
};
use durable_store::{PostgresStore, TestServer};

use crate::common::lifetime;

const WAIT: Duration = Duration::from_secs(30);

#[activity]
async fn cli_double(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n * 2)
}

#[activity]
async fn cli_charge(_ctx: ActivityContext, cents: u64) -> Result<u64, String> {
    Err(format!("card declined for {cents} cents"))
}

/// Two activities in a row.
#[orchestrator]
async fn cli_checkout(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let doubled = ctx.call(cli_double, n).await?;
    Ok(ctx.call(cli_double, doubled).await?)
}

/// An activity, then one that fails: the instance fails with its message.
#[orchestrator]
async fn cli_declined(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let doubled = ctx.call(cli_double, n).await?;
    Ok(ctx.call(cli_charge, doubled).await?)
}

/// Waits for an `approve` event and returns its payload.
#[orchestrator]
async fn cli_approval(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(ctx.wait_event::<String>("approve").await)
}

fn runtime(store: impl Store) -> RuntimeBuilder {
    Runtime::builder(store)
        .orchestrator(cli_checkout)
        .orchestrator(cli_declined)
        .orchestrator(cli_approval)
        .activity(cli_double)
        .activity(cli_charge)
}

/// A store in `dir` with two completed checkouts, a failed one and an approval waiting
/// for its event; the runtime shut down and the store released when it returns.
fn fill(dir: &Path) {
    fill_store(FjallStore::open(dir).unwrap());
}

/// `store` filled as [`fill`] says.
fn fill_store(store: impl Store) {
    lifetime(async {
        let runtime = runtime(store).start().await.unwrap();
        let client = runtime.client();
        for (id, n) in [("checkout-1", 3), ("checkout-2", 4)] {
            let done = client.start(cli_checkout, id, n).await.unwrap();
            assert_eq!(done.wait(WAIT).await.unwrap(), n * 4);
        }
        let declined = client.start(cli_declined, "declined", 5).await.unwrap();
        declined.wait(WAIT).await.unwrap_err();
        let approval = client.start(cli_approval, "approval", ()).await.unwrap();
        // Once its first turn ran, it waits for the event.
        for _ in 0..4_000 {
            if client
                .record("approval")
                .await
                .unwrap()
                .unwrap()
                .status
                .kind()
                != durable_core::StatusKind::Pending
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(approval);
        runtime.shutdown().await;
    });
}

/// What one run of the CLI printed.
#[derive(Debug)]
pub(crate) struct Run {
    code: ExitCode,
    out: String,
    err: String,
}

impl Run {
    pub(crate) fn ok(self) -> String {
        assert_eq!(self.code, ExitCode::SUCCESS, "{self:?}");
        self.out
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(self) -> T {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e}): {out}"))
    }

    pub(crate) fn fails(self, code: u8) -> String {
        assert_eq!(self.code, ExitCode::from(code), "{self:?}");
        assert!(self.out.is_empty(), "{self:?}");
        self.err
    }
}

/// Runs the CLI over the store in directory `store`.
pub(crate) fn durable(store: &Path, args: &[&str]) -> Run {
    durable_at(store.to_str().unwrap(), args)
}

/// Runs the CLI over the store `store` names (a directory or a PostgreSQL URL).
fn durable_at(store: &str, args: &[&str]) -> Run {
    let mut line = vec!["durable", "--store", store];
    line.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = durable_core::cli::run(line, &mut out, &mut err);
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn status_of<'a>(list: &'a InstanceList, id: &str) -> &'a str {
    let row = list.instances.iter().find(|row| row.id == id);
    &row.unwrap_or_else(|| panic!("no `{id}` in {list:?}"))
        .status
}

#[test]
fn list_show_history_and_stats_read_a_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());

    let list: InstanceList = durable(dir.path(), &["list", "--json"]).json();
    assert_eq!(list.instances.len(), 4, "{list:?}");
    assert_eq!(status_of(&list, "checkout-1"), "completed");
    assert_eq!(status_of(&list, "checkout-2"), "completed");
    assert_eq!(status_of(&list, "declined"), "failed");
    assert!(
        matches!(status_of(&list, "approval"), "running" | "pending"),
        "{list:?}"
    );
    assert_eq!(list.counts["completed"], 2);
    assert_eq!(list.counts["failed"], 1);

    // Paged: one a page, the cursor leads to the next.
    let first: InstanceList = durable(dir.path(), &["list", "--json", "--page-size", "1"]).json();
    let next = first.next.clone().expect("a next page");
    let second: InstanceList = durable(
        dir.path(),
        &["list", "--json", "--page-size", "1", "--after", &next],
    )
    .json();
    assert_ne!(first.instances[0].id, second.instances[0].id);
    let failed: InstanceList =
        durable(dir.path(), &["list", "--json", "--status", "failed"]).json();
    assert_eq!(failed.instances.len(), 1, "{failed:?}");
    let table = durable(dir.path(), &["list"]).ok();
    assert!(
        table.contains("checkout-1") && table.contains("completed"),
        "{table}"
    );
    assert!(table.contains("card declined for 10 cents"), "{table}");

    let history: Vec<HistoryRow> = durable(dir.path(), &["history", "checkout-1", "--json"]).json();
    let scheduled: Vec<&HistoryRow> = history
        .iter()
        .filter(|row| row.kind == "ActivityScheduled")
        .collect();
    assert_eq!(scheduled.len(), 2, "{history:?}");
    for row in &scheduled {
        assert_eq!(row.name.as_deref(), Some("cli_double"), "{row:?}");
        let site = row.site.as_ref().expect("an await site");
        assert!(site.file.ends_with("tests/integration/cli.rs"), "{site:?}");
    }
    let table = durable(dir.path(), &["history", "checkout-1"]).ok();
    let site = scheduled[0].site.as_ref().unwrap();
    assert!(
        table.contains(&format!("{}:{}", site.file, site.line)),
        "{table}"
    );

    let detail: InstanceDetail = durable(dir.path(), &["show", "declined", "--json"]).json();
    assert_eq!(detail.summary.status, "failed");
    let error = detail.error.expect("the failure");
    assert!(
        error.message.contains("card declined for 10 cents"),
        "{error:?}"
    );
    let shown = durable(dir.path(), &["show", "declined"]).ok();
    assert!(shown.contains("card declined for 10 cents"), "{shown}");
    // An event wait is not a step the history records: the instance shows as running,
    // waiting for no activity, timer or sub-orchestration.
    let waiting: InstanceDetail = durable(dir.path(), &["show", "approval", "--json"]).json();
    assert_eq!(waiting.summary.status, "running", "{waiting:?}");
    assert!(waiting.pending.activities.is_empty(), "{waiting:?}");

    let stats: Stats = durable(dir.path(), &["stats", "--json"]).json();
    assert_eq!(stats.counts["completed"], 2);
    let entities: EntityList = durable(dir.path(), &["entities", "--json"]).json();
    assert!(entities.entities.is_empty(), "{entities:?}");

    let err = durable(dir.path(), &["show", "nope"]).fails(1);
    let expected = format!("no instance `nope` in store {}", dir.path().display());
    assert!(err.contains(&expected), "{err}");
    let err = durable(dir.path(), &["list", "--created-since", "yesterday"]).fails(2);
    assert!(err.contains("RFC 3339"), "{err}");
    let missing = dir.path().join("missing");
    let err = durable(&missing, &["list"]).fails(1);
    assert!(err.contains("no durable store at"), "{err}");
    assert!(!missing.exists(), "reading must not create a store");
}

#[test]
fn export_writes_a_history_that_replays() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let file = dir.path().join("checkout-1.history");
    durable(
        dir.path(),
        &["export", "checkout-1", file.to_str().unwrap()],
    )
    .ok();
    let history = SavedHistory::load(&file).unwrap();
    assert_eq!(history.instance, "checkout-1");
    replay_test::replay(cli_checkout, &history).unwrap();
}

#[test]
fn a_raised_event_completes_the_instance_once_a_runtime_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    durable(
        dir.path(),
        &["raise", "approval", "approve", r#""granted""#],
    )
    .ok();
    // The CLI ran nothing: the instance still waits.
    let detail: InstanceDetail = durable(dir.path(), &["show", "approval", "--json"]).json();
    assert!(
        matches!(detail.summary.status.as_str(), "running" | "pending"),
        "{detail:?}"
    );
    let err = durable(dir.path(), &["raise", "approval", "approve", "not json"]).fails(2);
    assert!(err.contains("is not JSON"), "{err}");

    lifetime(async {
        let runtime = runtime(FjallStore::open(dir.path()).unwrap())
            .start()
            .await
            .unwrap();
        let approval = runtime.client().instance(cli_approval, "approval");
        assert_eq!(approval.wait(WAIT).await.unwrap(), "granted");
        runtime.shutdown().await;
    });
    let list: InstanceList = durable(dir.path(), &["list", "--json"]).json();
    assert_eq!(status_of(&list, "approval"), "completed");
}

#[test]
fn purge_by_status_removes_the_finished_instances() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let out = durable(dir.path(), &["purge", "--status", "completed"]).ok();
    assert!(out.contains("purged 2 instances"), "{out}");
    let list: InstanceList = durable(dir.path(), &["list", "--json"]).json();
    let ids: Vec<&str> = list.instances.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        !ids.contains(&"checkout-1") && !ids.contains(&"checkout-2"),
        "{ids:?}"
    );
    durable(dir.path(), &["purge", "declined"]).ok();
    let err = durable(dir.path(), &["purge", "approval"]).fails(1);
    assert!(err.contains("terminate it first"), "{err}");
    durable(dir.path(), &["purge"]).fails(2);
}

#[test]
fn a_store_held_by_a_running_runtime_names_its_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    lifetime(async move {
        let runtime = runtime(FjallStore::open(&path).unwrap())
            .start()
            .await
            .unwrap();
        let list = {
            let path = path.clone();
            move || durable(&path, &["list"])
        };
        let err = tokio::task::spawn_blocking(list.clone())
            .await
            .unwrap()
            .fails(1);
        assert!(err.contains("is open in another process"), "{err}");
        assert!(err.contains("durable --url"), "{err}");

        std::fs::write(path.join("durable-admin.url"), "http://127.0.0.1:7070/\n").unwrap();
        let err = tokio::task::spawn_blocking(list).await.unwrap().fails(1);
        assert!(
            err.contains("its admin API is at http://127.0.0.1:7070/ (run `durable --url http://127.0.0.1:7070/ ...`)"),
            "{err}"
        );
        runtime.shutdown().await;
    });
}

#[test]
fn on_postgres_the_cli_reads_and_steers_by_url() {
    let database = TestServer::shared().database();
    fill_store(PostgresStore::open(database.url()).unwrap());
    let url = TestServer::shared().tcp_url(TestServer::PASSWORD, database.name());

    let list: InstanceList = durable_at(&url, &["list", "--json"]).json();
    assert_eq!(list.instances.len(), 4, "{list:?}");
    assert_eq!(status_of(&list, "declined"), "failed");
    let history: Vec<HistoryRow> = durable_at(&url, &["history", "checkout-2", "--json"]).json();
    assert!(
        history.iter().any(|row| row.kind == "ActivityScheduled"),
        "{history:?}"
    );
    durable_at(&url, &["terminate", "approval", "--reason", "not needed"]).ok();
    let detail: InstanceDetail = durable_at(&url, &["show", "approval", "--json"]).json();
    assert!(
        matches!(
            detail.summary.status.as_str(),
            "terminated" | "running" | "pending"
        ),
        "{detail:?}"
    );
    // The password stays out of messages.
    let err = durable_at(&url, &["show", "nope"]).fails(1);
    assert!(
        err.contains("no instance `nope` in store postgres://postgres:***@"),
        "{err}"
    );
    assert!(!err.contains(TestServer::PASSWORD), "{err}");
}

/// A read over a database that holds no store creates none there: a mistyped database
/// name gets an error naming it, and stays empty.
#[test]
fn on_postgres_a_read_of_a_database_without_a_store_creates_no_schema() {
    let database = TestServer::shared().database();
    let url = TestServer::shared().tcp_url(TestServer::PASSWORD, database.name());
    let err = durable_at(&url, &["list"]).fails(1);
    assert!(err.contains("holds no durable schema"), "{err}");
    let mut client = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    let schema: bool = client
        .query_one("SELECT to_regclass('durable.meta') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!schema, "a read created durable's schema");
}
