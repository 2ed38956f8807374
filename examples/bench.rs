//! The benchmark of issue 5: how close durable checkpoints come to what the disk allows.
//!
//! ```text
//! cargo run --release --example bench -- all              # every scenario, durable turns
//! cargo run --release --example bench -- all --buffered   # the same without fsync
//! cargo run --release --example bench -- chain --n 2000   # one scenario, another size
//! cargo run --release --example bench -- chain --store postgres://user:pw@host/db
//! cargo run --release --example bench -- chain --limit 64  # its activities limited
//! ```
//!
//! Each scenario prints one JSON object on one line and runs on a fresh `FjallStore` in a
//! temp dir, with every turn fsync'd before it is acknowledged (`Durability::Sync`) unless
//! `--buffered` is given (`Durability::Buffered`). `all` runs each scenario in a child
//! process of its own, so one scenario's memory and threads do not weigh on the next
//! (`idle` measures the RSS of the process).
//!
//! - `chain`: N orchestrations (default 10,000) of 3 sequential activities, started
//!   together; throughput and start-to-completion latency. With `--limit K`, its
//!   activity has a concurrency limit of K (`ActivityLimits`): every task then starts
//!   through a claim of the store, which counts it against the limit (the cost of a limit
//!   check; issue 16).
//! - `fanout`: one orchestration fanning out N activities (default 10,000), joined.
//! - `long`: one orchestration awaiting N activities in sequence (default 10,000); the
//!   time of the first and the last 100 steps shows whether a step's cost grows with the
//!   history.
//! - `recovery`: an instance with an N-event history (default 10,000) whose timer fires
//!   while no runtime runs; the time from `RuntimeBuilder::start` on the reopened store
//!   until the instance's next activity runs.
//! - `idle`: N instances (default 100,000) all waiting on an external event; the RSS.
//! - `fjall`: the raw store on the same disk: one small write + fsync per op, and batches
//!   of 100 small writes with one fsync.
//! - `entity`: N signals (default 10,000) to one entity, then 10 × N spread over N
//!   entities, sent by the client all at once; the time until every operation's effect is
//!   committed, read back and checked (see `bench/entity.rs`).
//! - `scale`: a store holding N finished instances (default 1,000,000; 1 activity each, run
//!   through a runtime in a child process, 10,000 at a time) and 50 waiting ones; then,
//!   in this process: `Runtime::start` on it, listing a page of 50 running instances,
//!   counting by status, starting and finishing one new instance, and purging every
//!   finished instance, with the peak RSS (`VmHWM`) of this process. Not part of `all`;
//!   fjall only.
//!
//! With `--store URL`, the scenarios run on `PostgresStore` in that PostgreSQL database
//! instead, each on an empty schema: **the bench drops the database's `durable` schema**
//! before each one. Each line then starts with `"store":"postgres"`, and `fjall` measures
//! the raw server: one single-row `INSERT` per transaction, and 100-row transactions.

#[path = "bench/entity.rs"]
mod entity;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use durable_core::{
    ActivityContext, ActivityLimits, Durability, FjallStore, InstanceQuery, OrchestrationContext,
    PurgeFilter, Runtime, StatusKind, Store, activity, orchestrator,
};
use durable_store::PostgresStore;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

/// How long a scenario may take before the bench gives up on it.
const WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Parser)]
#[command(about = "Benchmarks durable's checkpoints against the raw fjall store")]
struct Args {
    /// Which scenario to run; `all` runs every one.
    scenario: Scenario,
    /// The scenario's size (orchestrations, activities, steps, events or instances).
    #[arg(long)]
    n: Option<u64>,
    /// Commit turns without fsync (`Durability::Buffered`); fjall only.
    #[arg(long, conflicts_with = "store")]
    buffered: bool,
    /// Run on PostgreSQL: the URL of a database whose `durable` schema the bench drops.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// `chain` only: limit its activity to this many at once (`ActivityLimits::concurrency`).
    #[arg(long, value_name = "K")]
    limit: Option<u32>,
    /// The store directory (`scale-fill` fills it, for `scale`).
    #[arg(long, hide = true)]
    dir: Option<std::path::PathBuf>,
}

/// Where a scenario's store lives.
#[derive(Clone, Copy)]
struct Place<'a> {
    durability: Durability,
    /// The PostgreSQL URL, or `None` for fjall in a temp dir.
    postgres: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Chain,
    Fanout,
    Long,
    Recovery,
    Idle,
    Fjall,
    Entity,
    Scale,
    /// The first half of `scale`, run as a child process of it.
    #[value(hide = true)]
    ScaleFill,
}

const EVERY: [Scenario; 7] = [
    Scenario::Fjall,
    Scenario::Chain,
    Scenario::Fanout,
    Scenario::Long,
    Scenario::Recovery,
    Scenario::Idle,
    Scenario::Entity,
];

// ---- Orchestrators and activities ----

#[activity]
async fn add_one(_ctx: ActivityContext, x: u64) -> Result<u64, String> {
    Ok(x + 1)
}

/// The seed's shape: three activities in sequence.
#[orchestrator]
async fn chain(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let a = ctx.call(add_one, x).await?;
    let b = ctx.call(add_one, a).await?;
    Ok(ctx.call(add_one, b).await?)
}

#[orchestrator]
async fn fanout(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let calls = (0..n).map(|i| ctx.call(add_one, i)).collect();
    let mut sum = 0;
    for result in ctx.join_all(calls).await {
        sum += result?;
    }
    Ok(sum)
}

/// When each step of `long` (and the step after recovery) ran.
#[derive(Debug, Default)]
struct Ticks(Mutex<Vec<Instant>>);

#[activity]
async fn tick(ctx: ActivityContext, step: u64) -> Result<u64, String> {
    ctx.state::<Arc<Ticks>>()
        .0
        .lock()
        .unwrap()
        .push(Instant::now());
    Ok(step)
}

#[orchestrator]
async fn long(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    for step in 0..n {
        ctx.call(tick, step).await?;
    }
    Ok(n)
}

/// Builds a history quickly (a fan-out of `n` activities), then sleeps on a durable timer
/// that fires while no runtime runs, then takes one more step.
#[orchestrator]
async fn recovering(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let calls = (0..n).map(|i| ctx.call(add_one, i)).collect();
    for result in ctx.join_all(calls).await {
        result?;
    }
    ctx.sleep(RECOVERY_SLEEP).await;
    Ok(ctx.call(tick, n).await?)
}

const RECOVERY_SLEEP: Duration = Duration::from_millis(1_000);

#[orchestrator]
async fn idle(ctx: OrchestrationContext, _x: ()) -> Result<u64, String> {
    Ok(ctx.wait_event::<u64>("never").await)
}

/// What `scale` fills its store with: one activity.
#[orchestrator]
async fn one_step(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(add_one, x).await?)
}

// ---- Scenarios ----

/// A new, empty store: fjall in `dir`, or PostgreSQL with durable's schema dropped.
fn open(dir: &Path, place: Place<'_>) -> Arc<dyn Store> {
    if let Some(url) = place.postgres {
        blocking(|| {
            let mut client = postgres::Client::connect(url, postgres::NoTls)
                .expect("connect to the PostgreSQL server");
            client
                .batch_execute("DROP SCHEMA IF EXISTS durable CASCADE")
                .expect("drop the durable schema");
        });
    }
    reopen(dir, place)
}

/// The store of [`open`] again, as it was left.
fn reopen(dir: &Path, place: Place<'_>) -> Arc<dyn Store> {
    match place.postgres {
        Some(url) => Arc::new(PostgresStore::open(url).expect("open the PostgreSQL store")),
        None => Arc::new(
            FjallStore::open_with(dir.join("store"), place.durability).expect("open the store"),
        ),
    }
}

/// Runs `f` on a thread of its own: the blocking PostgreSQL client panics on a thread
/// that runs the bench's tokio runtime.
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().expect("the blocking call panicked"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn run_chain(n: u64, place: Place<'_>, limit: Option<u32>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = Runtime::builder(open(dir.path(), place))
        .orchestrator(chain)
        .activity(add_one);
    if let Some(limit) = limit {
        builder = builder.activity_limits(add_one, ActivityLimits::new().concurrency(limit));
    }
    let runtime = builder.start().await.unwrap();
    let client = runtime.client();
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let instance = client.start(chain, format!("chain-{i}"), i).await.unwrap();
            assert_eq!(instance.wait(WAIT).await.unwrap(), i + 3);
            t0.elapsed().as_secs_f64() * 1e3
        });
    }
    let mut latencies = Vec::with_capacity(n as usize);
    while let Some(latency) = tasks.join_next().await {
        latencies.push(latency.unwrap());
    }
    let wall = began.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    report_stats("chain", &runtime);
    runtime.shutdown().await;
    let limit = limit.map_or_else(|| "null".to_owned(), |k| k.to_string());
    format!(
        r#"{{"scenario":"chain","limit":{limit},"orchestrations":{n},"activities":{},"wall_s":{wall:.3},"orch_per_s":{:.0},"p50_ms":{:.1},"p99_ms":{:.1}}}"#,
        3 * n,
        n as f64 / wall,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    )
}

async fn run_fanout(n: u64, place: Place<'_>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(open(dir.path(), place))
        .orchestrator(fanout)
        .activity(add_one)
        .start()
        .await
        .unwrap();
    let began = Instant::now();
    let instance = runtime.client().start(fanout, "fanout", n).await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), n * (n + 1) / 2);
    let wall = began.elapsed().as_secs_f64();
    report_stats("fanout", &runtime);
    runtime.shutdown().await;
    format!(r#"{{"scenario":"fanout","activities":{n},"wall_s":{wall:.3}}}"#)
}

async fn run_long(n: u64, place: Place<'_>) -> String {
    assert!(n >= 101, "long needs at least 101 steps");
    let dir = tempfile::tempdir().unwrap();
    let ticks = Arc::new(Ticks::default());
    let runtime = Runtime::builder(open(dir.path(), place))
        .orchestrator(long)
        .activity(tick)
        .state(ticks.clone())
        .start()
        .await
        .unwrap();
    let began = Instant::now();
    let instance = runtime.client().start(long, "long", n).await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), n);
    let wall = began.elapsed().as_secs_f64();
    report_stats("long", &runtime);
    runtime.shutdown().await;
    let ticks = ticks.0.lock().unwrap();
    assert_eq!(ticks.len() as u64, n, "every step ran once");
    let first = ticks[100].duration_since(ticks[0]).as_secs_f64();
    let last = ticks[ticks.len() - 1]
        .duration_since(ticks[ticks.len() - 101])
        .as_secs_f64();
    format!(
        r#"{{"scenario":"long","steps":{n},"wall_s":{wall:.3},"first100_s":{first:.4},"last100_s":{last:.4}}}"#
    )
}

async fn run_recovery(events: u64, place: Place<'_>) -> String {
    // Started, then a scheduled and a completed event per activity, then the timer: the
    // history holds `events` events when the runtime stops.
    assert!(
        events >= 4 && events.is_multiple_of(2),
        "recovery needs an even --n of at least 4"
    );
    let activities = (events - 2) / 2;
    let dir = tempfile::tempdir().unwrap();
    let ticks = Arc::new(Ticks::default());
    let runtime = Runtime::builder(open(dir.path(), place))
        .orchestrator(recovering)
        .activity(add_one)
        .activity(tick)
        .state(ticks.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    client
        .start(recovering, "recovering", activities)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let record = client.record("recovering").await.unwrap().unwrap();
        if u64::from(record.history_len) >= events {
            break;
        }
        assert!(Instant::now() < deadline, "the history was not built");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopped = Instant::now();
    drop(client);
    runtime.shutdown().await;
    assert!(
        ticks.0.lock().unwrap().is_empty(),
        "the timer fired too soon"
    );
    // The timer fires while no runtime runs, so the next one finds it due at once.
    tokio::time::sleep(
        RECOVERY_SLEEP.saturating_sub(stopped.elapsed()) + Duration::from_millis(100),
    )
    .await;

    let store = reopen(dir.path(), place);
    let started = Instant::now();
    let runtime = Runtime::builder(store)
        .orchestrator(recovering)
        .activity(add_one)
        .activity(tick)
        .state(ticks.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime.client().instance(recovering, "recovering");
    assert_eq!(instance.wait(WAIT).await.unwrap(), activities);
    let stepped = ticks.0.lock().unwrap()[0];
    let recovery_ms = stepped.duration_since(started).as_secs_f64() * 1e3;
    assert_eq!(runtime.replay_count(), 1, "the instance was replayed once");
    runtime.shutdown().await;
    format!(r#"{{"scenario":"recovery","events":{events},"recovery_ms":{recovery_ms:.1}}}"#)
}

async fn run_idle(n: u64, place: Place<'_>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(open(dir.path(), place))
        .orchestrator(idle)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let mut tasks = tokio::task::JoinSet::new();
    // Started in waves, as a service would see them arrive, not all in one instant.
    for wave in 0..n.div_ceil(10_000) {
        for i in wave * 10_000..n.min((wave + 1) * 10_000) {
            let client = client.clone();
            tasks.spawn(async move {
                client.start(idle, format!("idle-{i}"), ()).await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
    // Every instance has reached its wait: its first turn (one commit after its start's)
    // is on disk.
    let deadline = Instant::now() + WAIT;
    while runtime.commit_stats().commits < 2 * n {
        assert!(Instant::now() < deadline, "the instances did not all start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rss_mb = rss_mb();
    runtime.shutdown().await;
    format!(r#"{{"scenario":"idle","instances":{n},"rss_mb":{rss_mb:.0}}}"#)
}

/// With `BENCH_STATS` set, the commit counters on stderr (the JSON stays on stdout).
fn report_stats(scenario: &str, runtime: &Runtime) {
    if std::env::var_os("BENCH_STATS").is_some() {
        let stats = runtime.commit_stats();
        eprintln!(
            "{scenario}: {} commits in {} writes, {} replays",
            stats.commits,
            stats.writes,
            runtime.replay_count()
        );
    }
}

/// The resident set of this process, from `/proc/self/status`.
fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// A size of `/proc/self/status` (`VmRSS:`, `VmHWM:`), in MB.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The raw store: fjall alone, with keys and values the size of small records.
fn run_fjall(n: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path()).open().unwrap();
    let keyspace = db
        .keyspace("bench", KeyspaceCreateOptions::default)
        .unwrap();
    let value = [7u8; 100];
    let key = |i: u64| {
        let mut key = [0u8; 16];
        key[8..].copy_from_slice(&i.to_be_bytes());
        key
    };

    let singles = n.max(1);
    let began = Instant::now();
    for i in 0..singles {
        let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&keyspace, key(i), value);
        batch.commit().unwrap();
    }
    let single = singles as f64 / began.elapsed().as_secs_f64();

    let batches = n.div_ceil(100).max(1);
    let began = Instant::now();
    for b in 0..batches {
        let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
        for i in 0..100 {
            batch.insert(&keyspace, key(singles + b * 100 + i), value);
        }
        batch.commit().unwrap();
    }
    let batched = (batches * 100) as f64 / began.elapsed().as_secs_f64();
    format!(
        r#"{{"scenario":"fjall","single_fsync_ops_per_s":{single:.0},"batch100_fsync_writes_per_s":{batched:.0}}}"#
    )
}

/// The raw PostgreSQL server, as the `fjall` scenario measures fjall: one single-row
/// `INSERT` per transaction (each one WAL flush), and transactions of 100 rows.
fn run_raw_postgres(url: &str, n: u64) -> String {
    let mut client =
        postgres::Client::connect(url, postgres::NoTls).expect("connect to the server");
    client
        .batch_execute(
            "DROP TABLE IF EXISTS durable_bench_raw;
             CREATE TABLE durable_bench_raw (id bigint PRIMARY KEY, value bytea NOT NULL)",
        )
        .unwrap();
    let insert = client
        .prepare("INSERT INTO durable_bench_raw (id, value) VALUES ($1, $2)")
        .unwrap();
    let value = vec![7u8; 100];
    let singles = n.max(1) as i64;
    let began = Instant::now();
    for i in 0..singles {
        client.execute(&insert, &[&i, &value]).unwrap();
    }
    let single = singles as f64 / began.elapsed().as_secs_f64();

    let batches = n.div_ceil(100).max(1) as i64;
    let many = client
        .prepare(
            "INSERT INTO durable_bench_raw (id, value) \
             SELECT id, $2 FROM unnest($1::bigint[]) AS t(id)",
        )
        .unwrap();
    let began = Instant::now();
    for b in 0..batches {
        let ids: Vec<i64> = (0..100).map(|i| singles + b * 100 + i).collect();
        let mut tx = client.transaction().unwrap();
        tx.execute(&many, &[&ids, &value]).unwrap();
        tx.commit().unwrap();
    }
    let batched = (batches * 100) as f64 / began.elapsed().as_secs_f64();
    client
        .batch_execute("DROP TABLE durable_bench_raw")
        .unwrap();
    format!(
        r#"{{"scenario":"raw","single_row_tx_per_s":{single:.0},"batch100_rows_per_s":{batched:.0}}}"#
    )
}

/// Fills the store at `dir` with `n` finished `single` instances, 10,000 at a time, and
/// 50 `idle` ones waiting: the first half of `scale`, in a process of its own so the
/// second half measures its own peak RSS.
async fn run_scale_fill(dir: &Path, n: u64, durability: Durability) -> String {
    let store = FjallStore::open_with(dir, durability).expect("open the store");
    let runtime = Runtime::builder(store)
        .orchestrator(one_step)
        .orchestrator(idle)
        .activity(add_one)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for wave in 0..n.div_ceil(10_000) {
        for i in wave * 10_000..n.min((wave + 1) * 10_000) {
            let client = client.clone();
            tasks.spawn(async move {
                let instance = client
                    .start(one_step, format!("done-{i:07}"), i)
                    .await
                    .unwrap();
                assert_eq!(instance.wait(WAIT).await.unwrap(), i + 1);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
    for i in 0..50 {
        client
            .start(idle, format!("idle-{i:02}"), ())
            .await
            .unwrap();
    }
    // Each waiting instance has run its first turn.
    let deadline = Instant::now() + WAIT;
    loop {
        let running = client.count_by_status().await.unwrap()[&StatusKind::Running];
        if running == 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the waiting instances did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fill_s = began.elapsed().as_secs_f64();
    runtime.shutdown().await;
    format!("{fill_s:.1}")
}

fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

/// `scale`: fills a store in a child process, then measures what its size costs.
async fn run_scale(n: u64, durability: Durability) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut fill = Command::new(exe);
    fill.args(["scale-fill", "--n", &n.to_string(), "--dir"])
        .arg(&path);
    if durability == Durability::Buffered {
        fill.arg("--buffered");
    }
    let output = fill.output().expect("run the fill");
    assert!(output.status.success(), "the fill failed: {output:?}");
    let fill_s = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    let began = Instant::now();
    let store = FjallStore::open_with(&path, durability).expect("open the store");
    let open_ms = began.elapsed().as_secs_f64() * 1e3;
    let disk = store.clone();
    let began = Instant::now();
    let runtime = Runtime::builder(store)
        .orchestrator(one_step)
        .orchestrator(idle)
        .activity(add_one)
        .start()
        .await
        .unwrap();
    let start_ms = began.elapsed().as_secs_f64() * 1e3;
    let client = runtime.client();
    // What recovery reads, timed alone (warm): the work queue and the live instances.
    let timed = |read: &dyn Fn()| {
        let began = Instant::now();
        read();
        began.elapsed().as_secs_f64() * 1e3
    };
    let work_ms = timed(&|| drop(disk.work_items().unwrap()));
    let live_ms = timed(&|| assert_eq!(disk.live_instances().unwrap().len(), 50));

    let running = InstanceQuery::new()
        .status(StatusKind::Running)
        .page_size(50);
    let mut list_ms = Vec::new();
    for _ in 0..11 {
        let began = Instant::now();
        let page = client.list(&running).await.unwrap();
        list_ms.push(began.elapsed().as_secs_f64() * 1e3);
        assert_eq!(page.instances.len(), 50);
    }
    let began = Instant::now();
    let counts = client.count_by_status().await.unwrap();
    let count_ms = began.elapsed().as_secs_f64() * 1e3;
    assert_eq!(counts[&StatusKind::Completed], n);

    let mut one_ms = Vec::new();
    for i in 0..21 {
        let began = Instant::now();
        let instance = client.start(one_step, format!("new-{i}"), i).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), i + 1);
        one_ms.push(began.elapsed().as_secs_f64() * 1e3);
    }
    // Again once the store has settled: fjall flushes and compacts in the background
    // after an open, and the first starts share the disk with it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut settled_ms = Vec::new();
    for i in 0..21 {
        let began = Instant::now();
        let instance = client
            .start(one_step, format!("later-{i}"), i)
            .await
            .unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), i + 1);
        settled_ms.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let rss_before_purge_mb = rss_mb();

    let began = Instant::now();
    let purged = client.purge_where(&PurgeFilter::new()).await.unwrap();
    let purge_s = began.elapsed().as_secs_f64();
    assert_eq!(purged as u64, n + 42);
    let peak_rss_mb = status_mb("VmHWM:");
    runtime.shutdown().await;
    format!(
        r#"{{"scenario":"scale","instances":{n},"fill_s":{fill_s},"open_ms":{open_ms:.1},"start_ms":{start_ms:.1},"work_items_ms":{work_ms:.1},"live_ms":{live_ms:.2},"list50_ms":{:.2},"list50_first_ms":{:.2},"count_ms":{count_ms:.3},"start_one_ms":{:.2},"start_one_first_ms":{:.2},"start_one_settled_ms":{:.2},"rss_before_purge_mb":{rss_before_purge_mb:.0},"purge_s":{purge_s:.2},"purged":{purged},"peak_rss_mb":{peak_rss_mb:.0}}}"#,
        median(list_ms.clone()),
        list_ms[0],
        median(one_ms.clone()),
        one_ms[0],
        median(settled_ms),
    )
}

// ---- Driver ----

fn default_n(scenario: Scenario) -> u64 {
    match scenario {
        Scenario::Idle => 100_000,
        Scenario::Scale | Scenario::ScaleFill => 1_000_000,
        _ => 10_000,
    }
}

/// Runs every scenario, each in a child process of its own.
fn run_all(args: &Args) -> ExitCode {
    let exe = std::env::current_exe().expect("the bench's own path");
    for scenario in EVERY {
        let mut command = Command::new(&exe);
        command.arg(scenario.to_possible_value().unwrap().get_name());
        if let Some(n) = args.n {
            command.arg("--n").arg(n.to_string());
        }
        if args.buffered {
            command.arg("--buffered");
        }
        if let Some(url) = &args.store {
            command.arg("--store").arg(url);
        }
        match command.status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("bench: {scenario:?} failed: {status}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("bench: cannot run {scenario:?}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.scenario == Scenario::All {
        return run_all(&args);
    }
    let n = args.n.unwrap_or_else(|| default_n(args.scenario));
    let durability = if args.buffered {
        Durability::Buffered
    } else {
        Durability::Sync
    };
    let place = Place {
        durability,
        postgres: args.store.as_deref(),
    };
    let line = match args.scenario {
        Scenario::Chain => run_chain(n, place, args.limit).await,
        Scenario::Fanout => run_fanout(n, place).await,
        Scenario::Long => run_long(n, place).await,
        Scenario::Recovery => run_recovery(n, place).await,
        Scenario::Idle => run_idle(n, place).await,
        Scenario::Entity => entity::run_entity(n, place).await,
        Scenario::Fjall => match place.postgres {
            Some(url) => blocking(|| run_raw_postgres(url, n)),
            None => run_fjall(n),
        },
        Scenario::Scale | Scenario::ScaleFill if place.postgres.is_some() => {
            eprintln!("`scale` runs on fjall only");
            return ExitCode::FAILURE;
        }
        Scenario::Scale => run_scale(n, durability).await,
        Scenario::ScaleFill => {
            let dir = args.dir.as_deref().expect("scale-fill needs --dir");
            run_scale_fill(dir, n, durability).await
        }
        Scenario::All => unreachable!("handled above"),
    };
    match place.postgres {
        Some(_) => println!("{}", line.replacen('{', r#"{"store":"postgres","#, 1)),
        None => println!("{line}"),
    }
    ExitCode::SUCCESS
}
