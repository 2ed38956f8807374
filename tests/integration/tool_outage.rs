//! A tool's client ([`Client::open`]: the `durable` CLI, the dashboard, a script) over a
//! PostgreSQL store that cannot take its send gives up within seconds with a message that
//! names the server and says what to do, instead of trying to reserve work ids forever:
//! a server that went down before the send, a user who may read the store but not write.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use durable_core::{Client, Error, OrchestrationContext, Runtime, orchestrator};
use durable_store::{Event, Layered, PostgresStore, Store, StoreError, StoreLayer, TestServer};
use durable_store::{WorkId, WorkItem};

use crate::common::lifetime;

/// Longer than a tool tries (5 s) plus a try begun at its end: a send that takes this
/// long hangs.
const GIVE_UP: Duration = Duration::from_secs(20);

/// Waits for `go`.
#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.wait_event::<u64>("go").await)
}

/// Starts instance `w` of `waits_for_go` on the store at `url`, and stops the runtime.
fn waiting_instance(url: &str) {
    let store = PostgresStore::open(url).unwrap();
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(waits_for_go)
            .start()
            .await
            .unwrap();
        runtime.client().start(waits_for_go, "w", ()).await.unwrap();
        runtime.shutdown().await;
    });
}

/// Whether the store holds a raised event for `w`, in its history or as a message.
fn event_sent(store: &PostgresStore) -> bool {
    let raised = |e: &Event| matches!(e, Event::EventRaised { .. });
    store.history("w").unwrap().iter().any(raised)
        || (store.work_items().unwrap().iter())
            .any(|(_, item)| matches!(item, WorkItem::Message { event, .. } if raised(event)))
}

/// Stops the server at the first reservation of work ids: the tool's reads before its
/// send found the server up, its send finds it down.
struct StopsAtSend {
    inner: PostgresStore,
    server: Arc<TestServer>,
    stopped: AtomicBool,
}

impl StoreLayer for StopsAtSend {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }

    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.server.stop().unwrap();
        }
        self.inner.reserve_work_ids(count)
    }
}

#[test]
fn a_tools_send_to_a_postgresql_server_that_went_down_gives_up_with_a_message() {
    let server = Arc::new(TestServer::start().unwrap());
    let database = server.database();
    waiting_instance(database.url());
    let store = Layered(StopsAtSend {
        inner: PostgresStore::open(database.url()).unwrap(),
        server: server.clone(),
        stopped: AtomicBool::new(false),
    });
    let (err, took) = lifetime(async {
        let tool = Client::open(store).await.unwrap();
        let began = Instant::now();
        let sent = tokio::time::timeout(GIVE_UP, tool.raise_event("w", "go", &1u64)).await;
        let err = sent.expect("the send hangs").unwrap_err();
        (err, began.elapsed())
    });
    assert!(matches!(err, Error::StoreUnavailable { .. }), "{err:?}");
    assert!(
        took >= Duration::from_secs(4),
        "it tried for a while: {took:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(database.name()) && message.contains("send again"),
        "{message}"
    );

    // Nothing was sent: with the server back, neither the history nor the work queue
    // holds the event.
    server.start_again().unwrap();
    let store = PostgresStore::open(database.url()).unwrap();
    assert!(!event_sent(&store));
}

#[test]
fn durable_raise_as_a_user_who_may_only_read_exits_1_with_the_stores_answer() {
    let server = TestServer::shared();
    let database = server.database();
    waiting_instance(database.url());
    let reader = format!("reader_{}", database.name());
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    sql.batch_execute(&format!(
        "CREATE ROLE {reader} LOGIN PASSWORD 'pw';
         GRANT USAGE ON SCHEMA durable TO {reader};
         GRANT SELECT ON ALL TABLES IN SCHEMA durable TO {reader};"
    ))
    .unwrap();
    let url = format!(
        "postgres://{reader}:pw@127.0.0.1:{}/{}",
        server.port(),
        database.name()
    );
    let run = |args: &[&str]| {
        let mut line = vec!["durable", "--store", &url];
        line.extend(args);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = durable_core::cli::run(line, &mut out, &mut err);
        (code, String::from_utf8(err).unwrap())
    };
    // It may read.
    let (code, err) = run(&["show", "w"]);
    assert_eq!(code, ExitCode::SUCCESS, "{err}");

    let began = Instant::now();
    let (code, err) = run(&["raise", "w", "go", "1"]);
    assert!(began.elapsed() < GIVE_UP, "{:?}", began.elapsed());
    assert_eq!(code, ExitCode::from(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains(&reader) && err.contains("permission"),
        "{err}"
    );
    assert!(!err.contains("pw@"), "{err}");
    let store = PostgresStore::open(database.url()).unwrap();
    assert!(!event_sent(&store));
}
