//! Schedules (issue 16): each overlap policy, the catch-up window, the client's
//! operations, exactly one run per tick across a crash of the runtime, and on PostgreSQL
//! with three workers. The runs here wait for an event `done`, so a test decides when a
//! run finishes; the clock is a `ManualClock` the test moves tick by tick.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::schedule::{
    OverlapPolicy, Schedule, ScheduleAction, ScheduleDescription, ScheduleHandle, ScheduleSpec,
    run_id,
};
use durable_core::{
    Client, Error, ManualClock, OrchestrationContext, Runtime, StatusKind, Store, orchestrator,
};

use crate::common::{lifetime, store};

pub(crate) const MINUTE: Duration = Duration::from_secs(60);
/// Real time to wait for what must happen at once.
const WAIT: Duration = Duration::from_secs(30);

/// A tick of an every-minute schedule (a multiple of 60 s since the epoch).
pub(crate) fn tick(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_040 + 60 * n)
}

/// The time the tests start at: 1 s after tick 0.
pub(crate) fn start_time() -> SystemTime {
    tick(0) + Duration::from_secs(1)
}

/// A run: waits for `done`, then fails if told to.
#[orchestrator(name = "scheduled-job")]
pub(crate) async fn job(ctx: OrchestrationContext, label: String) -> Result<String, String> {
    let fail = ctx.wait_event::<bool>("done").await;
    if fail {
        return Err(format!("{label} failed"));
    }
    Ok(label)
}

pub(crate) fn every_minute(overlap: OverlapPolicy) -> Schedule {
    let spec = ScheduleSpec::every(MINUTE).unwrap();
    Schedule::new(spec, ScheduleAction::start(job, "j".to_string()).unwrap())
        .overlap(overlap)
        .status_poll(Duration::from_secs(1))
}

/// Polls `check` until it holds (at most [`WAIT`]).
pub(crate) async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

pub(crate) async fn exists(client: &Client, id: &str) -> bool {
    client.record(id).await.unwrap().is_some()
}

pub(crate) async fn status(client: &Client, id: &str) -> Option<StatusKind> {
    client.record(id).await.unwrap().map(|r| r.status.kind())
}

pub(crate) async fn describe(handle: &ScheduleHandle) -> ScheduleDescription {
    handle.describe(3).await.unwrap()
}

/// A runtime with schedules and `job`, on `store` and `clock`.
async fn runtime(store: impl Store, clock: &ManualClock) -> Runtime {
    Runtime::builder(store)
        .schedules()
        .orchestrator(job)
        .clock(clock.clone())
        .start()
        .await
        .unwrap()
}

/// One schedule on a fresh store, and the clock the test moves.
struct Bench {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    client: Client,
    schedule: ScheduleHandle,
    _runtime: Runtime,
}

impl Bench {
    async fn new(schedule: Schedule) -> Self {
        let (dir, store) = store();
        let clock = ManualClock::new(start_time());
        let runtime = runtime(store, &clock).await;
        let client = runtime.client();
        let handle = client.create_schedule("s", schedule).await.unwrap();
        Self {
            _dir: dir,
            clock,
            client,
            schedule: handle,
            _runtime: runtime,
        }
    }

    fn run(&self, n: u64) -> String {
        run_id("s", tick(n))
    }

    /// Moves the clock to tick `n` and waits until the schedule has handled it.
    async fn to_tick(&self, n: u64) {
        self.clock.set(tick(n));
        self.settle(tick(n)).await;
    }

    /// Waits until the schedule's state is as of `time` or later (its latest wake).
    async fn settle(&self, time: SystemTime) {
        until("the schedule handled the time", || async {
            let d = describe(&self.schedule).await;
            d.next_runs.first().is_none_or(|next| *next > time)
        })
        .await;
    }

    async fn finish(&self, n: u64) {
        let run = self.run(n);
        self.client.raise_event(&run, "done", &false).await.unwrap();
        until("the run finished", || async {
            status(&self.client, &run).await == Some(StatusKind::Completed)
        })
        .await;
    }

    /// Moves the clock past the schedule's status poll and waits for `run` to exist.
    async fn poll_until_started(&self, n: u64) {
        let run = self.run(n);
        let mut at = self.clock_now();
        let last = at + Duration::from_secs(30);
        until("the buffered run started", || {
            at = (at + Duration::from_secs(1)).min(last);
            self.clock.set(at);
            let run = run.clone();
            async move { exists(&self.client, &run).await }
        })
        .await;
    }

    fn clock_now(&self) -> SystemTime {
        use durable_core::Clock;
        self.clock.now()
    }

    /// Which of ticks `0..=n` have a run.
    async fn runs_up_to(&self, n: u64) -> Vec<u64> {
        let mut ran = Vec::new();
        for i in 0..=n {
            if exists(&self.client, &self.run(i)).await {
                ran.push(i);
            }
        }
        ran
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_drops_the_ticks_that_find_the_previous_run_running() {
    let b = Bench::new(every_minute(OverlapPolicy::Skip)).await;
    b.to_tick(1).await;
    b.to_tick(2).await;
    b.to_tick(3).await;
    b.finish(1).await;
    b.to_tick(4).await;
    assert_eq!(b.runs_up_to(4).await, [1, 4]);
    assert_eq!(describe(&b.schedule).await.skipped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_one_runs_one_waiting_tick_once_the_run_ends() {
    let b = Bench::new(every_minute(OverlapPolicy::BufferOne)).await;
    b.to_tick(1).await;
    b.to_tick(2).await;
    b.to_tick(3).await;
    assert_eq!(describe(&b.schedule).await.queued, [tick(2)]);
    b.finish(1).await;
    b.poll_until_started(2).await;
    assert_eq!(b.runs_up_to(3).await, [1, 2]);
    assert_eq!(describe(&b.schedule).await.skipped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_all_runs_every_tick_one_after_another() {
    let b = Bench::new(every_minute(OverlapPolicy::BufferAll)).await;
    b.to_tick(1).await;
    b.to_tick(2).await;
    b.to_tick(3).await;
    assert_eq!(b.runs_up_to(3).await, [1]);
    b.finish(1).await;
    b.poll_until_started(2).await;
    assert_eq!(b.runs_up_to(3).await, [1, 2]);
    b.finish(2).await;
    b.poll_until_started(3).await;
    assert_eq!(b.runs_up_to(3).await, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_all_starts_every_tick_beside_the_running_ones() {
    let b = Bench::new(every_minute(OverlapPolicy::AllowAll)).await;
    for n in 1..=3 {
        b.to_tick(n).await;
    }
    assert_eq!(b.runs_up_to(3).await, [1, 2, 3]);
    // A run exists (pending) once started; its first turn may come a moment later.
    for n in 1..=3 {
        until("the run runs", || async {
            status(&b.client, &b.run(n)).await != Some(StatusKind::Pending)
        })
        .await;
    }
    for n in 1..=3 {
        assert_eq!(
            status(&b.client, &b.run(n)).await,
            Some(StatusKind::Running)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_other_ends_the_previous_run_then_starts() {
    let b = Bench::new(every_minute(OverlapPolicy::TerminateOther)).await;
    b.to_tick(1).await;
    b.to_tick(2).await;
    until("the first run is terminated", || async {
        status(&b.client, &b.run(1)).await == Some(StatusKind::Terminated)
    })
    .await;
    assert_eq!(
        status(&b.client, &b.run(2)).await,
        Some(StatusKind::Running)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_a_run_within_its_bound_and_its_id_names_the_tick() {
    let spec = ScheduleSpec::every(MINUTE)
        .unwrap()
        .jitter(Duration::from_secs(30));
    let action = ScheduleAction::start(job, "j".to_string()).unwrap();
    let b = Bench::new(Schedule::new(spec, action)).await;
    let run = b.run(1);
    let mut at = tick(1) - Duration::from_secs(1);
    until("the jittered run started", || {
        at = (at + Duration::from_secs(1)).min(tick(1) + Duration::from_secs(30));
        b.clock.set(at);
        let run = run.clone();
        let client = b.client.clone();
        async move { exists(&client, &run).await }
    })
    .await;
    let created = b.client.record(&run).await.unwrap().unwrap().created_ms;
    let tick_ms = tick(1).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!((tick_ms..=tick_ms + 30_000).contains(&created), "{created}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_pauses_the_schedule_when_asked() {
    let b = Bench::new(every_minute(OverlapPolicy::Skip).pause_on_failure(true)).await;
    b.to_tick(1).await;
    b.client
        .raise_event(&b.run(1), "done", &true)
        .await
        .unwrap();
    let last = tick(1) + Duration::from_secs(30);
    until("the schedule is paused", || async {
        b.clock
            .set((b.clock_now() + Duration::from_secs(1)).min(last));
        describe(&b.schedule).await.paused.is_some()
    })
    .await;
    let note = describe(&b.schedule).await.paused.unwrap();
    assert!(
        note.contains(&b.run(1)) && note.contains("j failed"),
        "{note}"
    );
    b.clock.set(tick(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.runs_up_to(3).await, [1]);
}

#[test]
fn missed_ticks_inside_the_catchup_window_run_and_older_ones_are_counted() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let schedule = every_minute(OverlapPolicy::AllowAll).catchup_window(Duration::from_secs(150));
    lifetime(async {
        let runtime = runtime(store.clone(), &clock).await;
        runtime
            .client()
            .create_schedule("s", schedule)
            .await
            .unwrap();
        runtime.shutdown().await;
    });
    // Nothing ran while ticks 1 to 10 passed: 8, 9 and 10 are within 150 s of the time the
    // schedule next runs, the others are missed.
    clock.set(tick(10) + Duration::from_secs(1));
    lifetime(async {
        let runtime = runtime(store.clone(), &clock).await;
        let client = runtime.client();
        let handle = client.schedule("s");
        until("the schedule caught up", || async {
            describe(&handle).await.started == 3
        })
        .await;
        let d = describe(&handle).await;
        assert_eq!(d.missed, 7);
        for n in 1..=10 {
            assert_eq!(
                exists(&client, &run_id("s", tick(n))).await,
                n >= 8,
                "tick {n}"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_unpause_trigger_backfill_describe_and_delete() {
    let b = Bench::new(every_minute(OverlapPolicy::AllowAll)).await;
    let d = describe(&b.schedule).await;
    assert_eq!(d.next_runs, [tick(1), tick(2), tick(3)]);
    assert_eq!((d.paused, d.started, d.missed), (None, 0, 0));
    // A duplicate id is refused.
    let again = b
        .client
        .create_schedule("s", every_minute(OverlapPolicy::Skip))
        .await;
    assert!(matches!(again, Err(Error::ScheduleExists(id)) if id == "s"));

    b.schedule.pause("maintenance").await.unwrap();
    until("paused", || async {
        describe(&b.schedule).await.paused.as_deref() == Some("maintenance")
    })
    .await;
    b.clock.set(tick(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.runs_up_to(2).await, Vec::<u64>::new());

    // A trigger runs while paused, as its own tick: the time it was handled. The spec
    // ticks at that instant: the tick keeps its id (a backfill over tick 2 runs it), the
    // trigger's run gets `-2`.
    b.schedule.trigger().await.unwrap();
    until("triggered", || async {
        describe(&b.schedule).await.started == 1
    })
    .await;
    let d = describe(&b.schedule).await;
    let triggered = format!("{}-2", run_id("s", tick(2)));
    assert_eq!(d.recent_runs[0].instance_id, triggered);
    assert_eq!(d.recent_runs[0].status, Some(StatusKind::Running));

    b.schedule.unpause().await.unwrap();
    until("unpaused", || async {
        describe(&b.schedule).await.paused.is_none()
    })
    .await;
    b.to_tick(3).await;
    assert_eq!(
        b.runs_up_to(3).await,
        [3],
        "ticks 1 and 2 passed while paused"
    );
    assert!(exists(&b.client, &triggered).await);

    // A backfill of ticks -3 .. 0 (before the schedule existed), under its own policy.
    b.schedule
        .backfill(tick(0) - 3 * MINUTE, tick(1), OverlapPolicy::AllowAll)
        .await
        .unwrap();
    until("backfilled", || async {
        describe(&b.schedule).await.started == 6
    })
    .await;
    for n in 0..4 {
        let id = run_id("s", tick(0) - n * MINUTE);
        assert!(exists(&b.client, &id).await, "{id}");
    }
    assert!(!exists(&b.client, &run_id("s", tick(0) - 4 * MINUTE)).await);

    // An update takes effect from its next tick: every two minutes from now on.
    let every_two = Schedule::new(
        ScheduleSpec::every(2 * MINUTE).unwrap(),
        ScheduleAction::start(job, "k".to_string()).unwrap(),
    );
    b.schedule.update(every_two).await.unwrap();
    until("updated", || async {
        describe(&b.schedule).await.next_runs == [tick(4), tick(6), tick(8)]
    })
    .await;

    b.schedule.delete().await.unwrap();
    assert!(matches!(
        b.schedule.describe(1).await,
        Err(Error::ScheduleNotFound(_))
    ));
    assert!(matches!(
        b.schedule.pause("x").await,
        Err(Error::ScheduleNotFound(_))
    ));
    // Its runs stay; the id can be used again.
    assert!(exists(&b.client, &b.run(3)).await);
    b.client
        .create_schedule("s", every_minute(OverlapPolicy::Skip))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_an_operator_terminated_is_deleted_by_purging_it() {
    let b = Bench::new(every_minute(OverlapPolicy::Skip)).await;
    let id = "schedule:s";
    b.client.terminate(id, "by hand").await.unwrap();
    until("terminated", || async {
        status(&b.client, id).await == Some(StatusKind::Terminated)
    })
    .await;
    assert!(matches!(
        b.schedule.pause("x").await,
        Err(Error::ScheduleNotFound(_))
    ));
    b.schedule.delete().await.unwrap();
    assert!(!exists(&b.client, id).await);
}

#[test]
fn each_tick_runs_once_across_crashes_of_the_runtime() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    // Each lifetime moves the clock to the next tick and ends after a few milliseconds,
    // as a crash would: before the timer fires, mid-turn, mid-start, or after.
    for (life, delay_ms) in [0u64, 1, 2, 4, 8, 16].into_iter().enumerate() {
        lifetime(async {
            let runtime = runtime(store.clone(), &clock).await;
            if life == 0 {
                let schedule = every_minute(OverlapPolicy::AllowAll);
                runtime
                    .client()
                    .create_schedule("s", schedule)
                    .await
                    .unwrap();
            }
            clock.set(tick(life as u64 + 1));
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        });
    }
    lifetime(async {
        let runtime = runtime(store.clone(), &clock).await;
        let client = runtime.client();
        clock.set(tick(7));
        let handle = client.schedule("s");
        until("the schedule started the seven runs", || async {
            describe(&handle).await.started == 7
        })
        .await;
        let d = describe(&handle).await;
        assert_eq!((d.missed, d.skipped), (0, 0));
        assert_eq!(
            all_runs(&store),
            (1..=7).map(|n| run_id("s", tick(n))).collect::<Vec<_>>()
        );
    });
}

/// The ids of the runs in `store`, sorted.
fn all_runs(store: &impl Store) -> Vec<String> {
    let mut runs: Vec<String> = store
        .instances()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| id.starts_with("s-"))
        .collect();
    runs.sort();
    runs
}

#[test]
fn three_workers_on_postgres_start_each_tick_exactly_once() {
    use durable_core::PostgresStore;
    use durable_store::TestServer;

    let database = TestServer::shared().database();
    let clock = ManualClock::new(start_time());
    lifetime(async {
        let mut workers = Vec::new();
        for _ in 0..3 {
            let store = PostgresStore::open(database.url()).unwrap();
            let worker = Runtime::builder(store)
                .schedules()
                .orchestrator(job)
                .clock(clock.clone())
                .lease(Duration::from_secs(2))
                .start()
                .await
                .unwrap();
            workers.push(worker);
        }
        let client = workers[0].client();
        client
            .create_schedule("s", every_minute(OverlapPolicy::AllowAll))
            .await
            .unwrap();
        for n in 1..=8 {
            if n == 5 {
                // One worker leaves mid-schedule; the others go on.
                workers.remove(0).shutdown().await;
            }
            clock.set(tick(n));
            let client = workers[0].client();
            let run = run_id("s", tick(n));
            until("the run started", || exists(&client, &run)).await;
        }
        let store = PostgresStore::open(database.url()).unwrap();
        let client = workers[0].client();
        let handle = client.schedule("s");
        until("the schedule kept its eighth start", || async {
            describe(&handle).await.started == 8
        })
        .await;
        assert_eq!(describe(&handle).await.missed, 0);
        assert_eq!(
            all_runs(&store),
            (1..=8).map(|n| run_id("s", tick(n))).collect::<Vec<_>>()
        );
        for worker in workers {
            worker.shutdown().await;
        }
    });
}
