//! A crash at every checkpoint (issue 6): one workflow that uses what the product offers
//! (a chain, a fan-out, a durable timer, two external events, a sub-orchestration and a
//! continue-as-new that carries the event its generation did not take) runs once cleanly
//! to count its commits, N. Then, for every k in 1..=N (and past N while runs still reach
//! k), on a fresh fjall directory, commit k fails and the process dies right there: its
//! tokio runtime is dropped, which cancels every task, without `Runtime::shutdown`. A new
//! process (a new `FjallStore` on the same directory, a new `Runtime`) must finish the
//! workflow with the right output, every effect applied under one idempotency key, each
//! event taken once and in order, and nothing left in the store.
//!
//! Each process does what a user's would: start the instance (which finds it if it
//! exists), raise the two events, wait for the output. Raising is not idempotent (each
//! call adds an event), so a process raises an event only if no earlier one got it onto
//! the disk.
//!
//! Time is a step the test takes, not a race with the real clock: every runtime of a case
//! runs on one `ManualClock`, a simulated wall clock that outlives the crash. It moves once,
//! to the timer's time, when the workflow waits on the timer and both events are on the
//! disk; so a crash between the timer's creation and that step leaves the restarted runtime
//! a timer it re-arms from the store and that fires only when the clock gets there.
//!
//! Two ways to die at commit k:
//! - before it reaches the disk: commit k and every later one fail and write nothing;
//! - after it reached the disk: commit k is written and reported failed (an fsync that
//!   failed after the write), and every later one fails and writes nothing, as fjall
//!   refuses every write after a failed one.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durable_core::record::{Event, Status, WorkItem};
use durable_core::{
    ActivityContext, Clock, Error, FjallStore, InstanceStatus, ManualClock, OrchestrationContext,
    Runtime, RuntimeBuilder, Store, activity, orchestrator,
};
use durable_store::{Call, FaultSwitch, FaultyStore};
use serde::{Deserialize, Serialize};

use crate::common::{Disk, EffectLedger, Step, lifetime, step};

/// The workflow's instance id.
const ID: &str = "tour";
/// Its input.
const FIRST: Round = Round {
    generation: 0,
    n: 1,
};
/// Branches of the fan-out.
const FAN: u64 = 3;
/// The durable timer's length: a day, which the test's clock passes in one step.
const TIMER: Duration = Duration::from_secs(24 * 60 * 60);
/// The external event the test raises twice, with these payloads in this order, while the
/// workflow waits on its timer: generation 0 takes the first and carries the second over to
/// generation 1. (Different payloads, so the test can tell which of the two is on disk.)
const EVENT: &str = "approve";
const APPROVALS: [u64; 2] = [1000, 20];
/// How often the test looks at the store while a lifetime runs.
const POLL: Duration = Duration::from_millis(1);
/// The longest a lifetime may take before the test calls it a hang.
const WAIT: Duration = Duration::from_secs(20);

/// The input of a generation of `tour`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Round {
    generation: u32,
    n: u64,
}

/// What `effect` computes.
fn f(x: u64) -> u64 {
    x * 2 + 1
}

/// Generation 0: a chain, a fan-out, a timer, an external event, a sub-orchestration, then
/// continue-as-new; generation 1: a step, the event generation 0 did not take, a step that
/// folds it in, and the output.
#[orchestrator]
async fn tour(ctx: OrchestrationContext, round: Round) -> Result<u64, String> {
    let g = round.generation;
    let a = ctx.call(effect, step(format!("g{g}-a"), round.n)).await?;
    if g > 0 {
        let approval = ctx.wait_event::<u64>(EVENT).await;
        return Ok(ctx.call(effect, step("g1-b", a + approval)).await?);
    }
    let b = ctx.call(effect, step("g0-b", a)).await?;
    let calls = (0..FAN)
        .map(|i| ctx.call(effect, step(format!("g0-fan-{i}"), b + i)))
        .collect();
    let mut sum = 0;
    for result in ctx.join_all(calls).await {
        sum += result?;
    }
    ctx.sleep(TIMER).await;
    let approval = ctx.wait_event::<u64>(EVENT).await;
    let child = ctx.sub_orchestration(leaf, sum + approval).await?;
    let next = Round {
        generation: 1,
        n: child,
    };
    ctx.continue_as_new(next).await
}

/// The sub-orchestration: one step.
#[orchestrator]
async fn leaf(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(effect, step("leaf", n)).await?)
}

/// What the workflow returns: it depends on both approvals and on their order, so a first
/// event taken twice or the two taken out of order show in it. (A lost event leaves the
/// workflow waiting; a second one taken twice shows in generation 1's history.)
fn expected_output() -> u64 {
    f(f(child_output()) + APPROVALS[1])
}

/// What the sub-orchestration returns.
fn child_output() -> u64 {
    let b = f(f(FIRST.n));
    let sum: u64 = (0..FAN).map(|i| f(b + i)).sum();
    f(sum + APPROVALS[0])
}

/// Every logical effect of the workflow.
fn expected_effects() -> Vec<String> {
    let mut names = vec!["g0-a".to_string(), "g0-b".to_string()];
    names.extend((0..FAN).map(|i| format!("g0-fan-{i}")));
    names.extend(["leaf", "g1-a", "g1-b"].map(String::from));
    names
}

/// The workflow's only side effect, recorded in the ledger under its idempotency key
/// (which checks that its task is on the disk of the running lifetime first).
#[activity]
async fn effect(ctx: ActivityContext, step: Step) -> Result<u64, String> {
    let disk = &ctx.state::<Disk>().0;
    ctx.state::<Arc<EffectLedger>>()
        .record(&ctx, disk, step.name);
    Ok(f(step.value))
}

/// How the process dies at commit k.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Commit k and every later one fail and write nothing.
    BeforeTheWrite,
    /// Commit k is written and reported failed; every later one fails and writes nothing.
    AfterTheWrite,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::BeforeTheWrite => "dies before commit k is written",
            Mode::AfterTheWrite => "dies after commit k is written, before it is acknowledged",
        })
    }
}

/// A lifetime's stores: the fjall store, and the faulty wrapper its runtime writes
/// through.
struct Stores {
    faulty: FaultyStore<FjallStore>,
    disk: FjallStore,
    switch: FaultSwitch,
}

impl Stores {
    /// Opens the fjall store in `dir` (it must not be open any more) with the faults of
    /// `crash`, or none.
    fn open(dir: &Path, crash: Option<(Mode, u64)>, case: &str) -> Self {
        let disk = FjallStore::open(dir).unwrap_or_else(|e| {
            panic!("{case}: the store did not reopen, so a handle of the last lifetime is still open: {e}")
        });
        let faulty = FaultyStore::new(disk.clone());
        let faulty = match crash {
            None => faulty,
            Some((Mode::BeforeTheWrite, k)) => faulty.fail_commits_from(k),
            // As fjall after a failed fsync: the write is there, and the store refuses
            // every later one.
            Some((Mode::AfterTheWrite, k)) => {
                faulty.fail_commit(k).written_anyway().poison_on_failure()
            }
        };
        Self {
            switch: faulty.switch(),
            faulty,
            disk,
        }
    }

    /// How many faults were injected: once there is one, the process is to die.
    fn injected(&self) -> u64 {
        self.switch.injected()
    }
}

/// The time every case's clock starts at.
fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// What one case keeps across its process lifetimes: the effects applied and the clock.
struct World {
    ledger: Arc<EffectLedger>,
    clock: ManualClock,
}

impl World {
    fn new() -> Self {
        Self {
            ledger: Arc::new(EffectLedger::default()),
            clock: ManualClock::new(start_time()),
        }
    }
}

fn builder(stores: &Stores, world: &World) -> RuntimeBuilder {
    Runtime::builder(stores.faulty.clone())
        .orchestrator(tour)
        .orchestrator(leaf)
        .activity(effect)
        .state(world.ledger.clone())
        .state(Disk(stores.disk.clone()))
        .clock(world.clock.clone())
}

/// How a lifetime ended.
enum End {
    /// The workflow finished with this output; the runtime is still running.
    Finished(u64, Runtime),
    /// A commit failed, and the lifetime ended there.
    Crashed,
}

/// Runs one process lifetime on `stores`: starts a runtime, starts the workflow (or finds
/// it), raises the events nobody raised yet and moves the clock to the timer when the
/// workflow waits on it, and waits for the output. Returns as soon as a fault is injected:
/// the caller's tokio runtime is then dropped, which is the crash.
async fn live(stores: &Stores, world: &World, case: &str) -> End {
    let crashed = async {
        while stores.injected() == 0 {
            tokio::time::sleep(POLL).await;
        }
    };
    let ended = async {
        tokio::select! {
            biased;
            () = crashed => End::Crashed,
            (output, runtime) = drive(stores, world, case) => End::Finished(output, runtime),
        }
    };
    match tokio::time::timeout(WAIT, ended).await {
        Ok(end) => end,
        Err(_) => panic!(
            "{case}: the workflow neither finished nor crashed within {WAIT:?} ({} faults injected); on disk: {}",
            stores.injected(),
            describe(&stores.disk)
        ),
    }
}

/// The process's work, as a user would write it, and the clock's one step. A client call
/// that fails because of an injected fault waits for the crash; any other failure is a bug.
async fn drive(stores: &Stores, world: &World, case: &str) -> (u64, Runtime) {
    let clock = &world.clock;
    let runtime = match builder(stores, world).start().await {
        Ok(runtime) => runtime,
        Err(e) => return doomed(stores, e, case).await,
    };
    let client = runtime.client();
    let instance = match client.start(tour, ID, FIRST).await {
        Ok(instance) => instance,
        Err(e) => return doomed(stores, e, case).await,
    };
    loop {
        match instance.status().await {
            Ok(InstanceStatus::Completed(output)) => return (output, runtime),
            Ok(InstanceStatus::Pending | InstanceStatus::Running) => {}
            Ok(other) => panic!(
                "{case}: {ID} ended {other:?}; on disk: {}",
                describe(&stores.disk)
            ),
            Err(e) => return doomed(stores, e, case).await,
        }
        // The clock is read after the history, and it only moves forward.
        let seen = timer(&stores.disk);
        let now = clock.now();
        match seen {
            Some(Timer {
                fire_at,
                fired: true,
            }) if now < fire_at => panic!(
                "{case}: the timer fired before the clock reached {fire_at:?}; on disk: {}",
                describe(&stores.disk)
            ),
            // Until this step, only this loop moves the clock: the timer cannot fire, and
            // an event can only go from the queue to generation 0's history.
            Some(Timer {
                fire_at,
                fired: false,
            }) if now < fire_at => {
                for approval in APPROVALS {
                    if on_disk(&stores.disk, approval) {
                        continue;
                    }
                    if let Err(e) = client.raise_event(ID, EVENT, &approval).await {
                        return doomed(stores, e, case).await;
                    }
                }
                // The clock has not moved since: the timer still waits.
                assert!(
                    timer(&stores.disk).is_some_and(|t| !t.fired),
                    "{case}: the timer fired before the clock reached {fire_at:?}; on disk: {}",
                    describe(&stores.disk)
                );
                clock.set(fire_at);
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After an error: if a fault was injected the process is about to die, so wait for it
/// (`live` sees the fault and ends the lifetime); else the error is a bug.
async fn doomed<T>(stores: &Stores, e: Error, case: &str) -> T {
    if stores.injected() == 0 {
        panic!("{case}: {e}");
    }
    std::future::pending().await
}

/// Generation 0's timer, as its history shows it.
struct Timer {
    fire_at: SystemTime,
    fired: bool,
}

/// The timer in the history on disk: `None` before generation 0 created it, and once
/// generation 1 started.
fn timer(disk: &FjallStore) -> Option<Timer> {
    let history = disk.history(ID).unwrap();
    let fire_at_ms = history.iter().find_map(|e| match e {
        Event::TimerCreated { fire_at_ms, .. } => Some(*fire_at_ms),
        _ => None,
    })?;
    Some(Timer {
        fire_at: UNIX_EPOCH + Duration::from_millis(fire_at_ms),
        fired: history
            .iter()
            .any(|e| matches!(e, Event::TimerFired { .. })),
    })
}

/// Whether the approval `payload` was raised onto the disk. Asked only while generation 0
/// waits on its timer, which the clock keeps from firing: then an event raised is either a
/// queued message or in generation 0's history, and only moves from the first to the
/// second, so reading the queue first sees it wherever it is. (Later it would become a
/// message for generation 1 and then part of generation 1's history, while generation 0's
/// is removed: no order of reads would see it through every move.) Only the test raises
/// events, so a `false` stays `false` until the test raises it.
fn on_disk(disk: &FjallStore, payload: u64) -> bool {
    let payload = serde_json::to_vec(&payload).unwrap();
    let is_it = |e: &Event| match e {
        Event::EventRaised { name, payload: p } => name == EVENT && *p == payload,
        _ => false,
    };
    let queued = disk.work_items().unwrap().iter().any(|(_, item)| {
        matches!(item, WorkItem::Message { instance, event, .. } if instance == ID && is_it(event))
    });
    queued || disk.history(ID).unwrap().iter().any(is_it)
}

/// What the store holds, for failure messages.
fn describe(disk: &FjallStore) -> String {
    let instances: Vec<_> = disk
        .instances()
        .unwrap()
        .into_iter()
        .map(|(id, r)| {
            let history = disk.history(&id).unwrap();
            format!(
                "{id}: {} generation {} history {history:?}",
                r.status.name(),
                r.generation
            )
        })
        .collect();
    format!(
        "instances [{}]; work items {:?}",
        instances.join("; "),
        disk.work_items().unwrap()
    )
}

/// Checks what the store holds once the workflow finished: the instance and its child
/// completed with their outputs and whole histories, the second generation's history
/// holds its two steps and the one event carried over to it, nothing is left in the queue
/// or in progress checkpoints, and the clock moved once, to the timer.
fn assert_settled(disk: &FjallStore, world: &World, case: &str) {
    let all = describe(disk);
    let instances = disk.instances().unwrap();
    assert_eq!(instances.len(), 2, "{case}: the instances: {all}");
    for (id, record) in &instances {
        let history = disk.history(id).unwrap();
        assert_eq!(record.history_len as usize, history.len(), "{case}: {id}");
        let count = |is: fn(&Event) -> bool| history.iter().filter(|e| is(e)).count();
        let steps = (
            count(|e| matches!(e, Event::ActivityScheduled { .. })),
            count(|e| matches!(e, Event::ActivityCompleted { .. })),
        );
        if id == ID {
            let output = serde_json::to_vec(&expected_output()).unwrap();
            assert_eq!(record.status, Status::Completed { output }, "{case}: {all}");
            assert_eq!(record.generation, 1, "{case}: {all}");
            assert_eq!(steps, (2, 2), "{case}: generation 1 of {id}: {history:?}");
            let events: Vec<u64> = history
                .iter()
                .filter_map(|e| match e {
                    Event::EventRaised { payload, .. } => {
                        Some(serde_json::from_slice(payload).unwrap())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                events,
                APPROVALS[1..],
                "{case}: the events generation 1 got: {history:?}"
            );
        } else {
            let parent = record.parent.as_ref().map(|p| p.instance.as_str());
            assert_eq!(
                parent,
                Some(ID),
                "{case}: an instance that is no child: {all}"
            );
            let output = serde_json::to_vec(&child_output()).unwrap();
            assert_eq!(record.status, Status::Completed { output }, "{case}: {all}");
            assert_eq!(steps, (1, 1), "{case}: child {id}: {history:?}");
        }
    }
    assert_eq!(disk.work_items().unwrap(), vec![], "{case}: work left");
    assert_eq!(world.clock.now(), start_time() + TIMER, "{case}: the clock");
    for key in world.ledger.keys() {
        assert_eq!(
            disk.progress(&key).unwrap(),
            None,
            "{case}: progress of {key}"
        );
    }
}

/// Runs the workflow once without faults; returns how many commits it made.
fn clean_run() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new();
    let case = "without faults";
    let commits = lifetime(async {
        let stores = Stores::open(dir.path(), None, case);
        let End::Finished(output, runtime) = live(&stores, &world, case).await else {
            panic!("{case}: a fault was injected");
        };
        let commits = stores.switch.count(Call::Commit);
        assert_eq!(output, expected_output(), "{case}");
        runtime.shutdown().await;
        assert_settled(&stores.disk, &world, case);
        commits
    });
    world
        .ledger
        .assert_exactly_once(&expected_effects(), false, case);
    commits
}

/// What the sweep of one mode saw.
#[derive(Debug, Default)]
struct Sweep {
    /// The k the first process reached (the others were past the end of its run).
    reached: Vec<u64>,
    /// Activity executions beyond the first of their key, over all cases.
    reruns: usize,
    /// Restarts that found the timer on disk, not fired, ahead of the clock: the new
    /// runtime re-armed it, and it fired when the test moved the clock.
    timers_ahead: usize,
    /// Restarts that found the timer on disk, not fired, with the clock already past it:
    /// the new runtime re-armed it, and it fired at once.
    timers_due: usize,
}

/// Crashes the workflow at each commit k in 1..=N in `mode` (and past N while runs still
/// reach k: how many turns the fan-out's results take varies a little), restarts it on the
/// same directory, and checks it finishes once.
fn crash_at_every_commit(mode: Mode) {
    let started = Instant::now();
    let commits = clean_run();
    assert!(commits >= 12, "only {commits} commits in a clean run");
    let mut sweep = Sweep::default();
    for k in 1.. {
        let case = format!("commit {k} of {commits}: {mode}");
        let dir = tempfile::tempdir().unwrap();
        let world = World::new();
        // The first process: dies at commit k, or finishes if its run makes fewer (or if
        // commit k, written anyway, completed the workflow and the output was read first).
        let first = format!("{case}, first process");
        let reached = lifetime(async {
            let stores = Stores::open(dir.path(), Some((mode, k)), &first);
            if let End::Finished(output, _) = live(&stores, &world, &first).await {
                assert_eq!(output, expected_output(), "{first}");
            }
            // The runtime handle and `stores` drop here, and every task with the tokio
            // runtime: a crash.
            stores.injected() > 0
        });
        if reached {
            sweep.reached.push(k);
        } else if k > commits {
            break;
        }
        // The next process, on the same directory.
        let next = format!("{case}, after the restart");
        lifetime(async {
            let stores = Stores::open(dir.path(), None, &next);
            match timer(&stores.disk) {
                Some(t) if !t.fired && world.clock.now() < t.fire_at => sweep.timers_ahead += 1,
                Some(t) if !t.fired => sweep.timers_due += 1,
                _ => {}
            }
            let End::Finished(output, runtime) = live(&stores, &world, &next).await else {
                panic!("{next}: a fault without a rule");
            };
            assert_eq!(output, expected_output(), "{next}");
            runtime.shutdown().await;
            assert_settled(&stores.disk, &world, &next);
        });
        sweep.reruns += world
            .ledger
            .assert_exactly_once(&expected_effects(), true, &next);
    }
    eprintln!(
        "checkpoints ({mode}): N = {commits} commits; died at commit {:?}; {} activity reruns; \
         timer re-armed ahead of the clock {} times, due {} times; {:.1?}",
        sweep.reached,
        sweep.reruns,
        sweep.timers_ahead,
        sweep.timers_due,
        started.elapsed()
    );
    // The last k or two may fall past the end of a run that took fewer turns.
    assert!(
        sweep.reached.len() as u64 + 2 >= commits,
        "{mode}: died at only {:?} of {commits}",
        sweep.reached
    );
    // A crash after the timer's commit and before the clock's step (at the commit that
    // raises the first event, in either mode) leaves a timer for the next runtime.
    assert!(
        sweep.timers_ahead > 0,
        "{mode}: no restart found the timer waiting for the clock"
    );
}

#[test]
fn a_crash_before_any_checkpoint_is_written_loses_nothing_and_duplicates_nothing() {
    crash_at_every_commit(Mode::BeforeTheWrite);
}

#[test]
fn a_crash_after_a_checkpoint_is_written_but_not_acknowledged_loses_nothing_and_duplicates_nothing()
{
    crash_at_every_commit(Mode::AfterTheWrite);
}
