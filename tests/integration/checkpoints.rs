//! A crash at every checkpoint (issue 6): one workflow that uses what the product offers
//! (a chain, a fan-out, a durable timer, an external event, a sub-orchestration and a
//! continue-as-new) runs once cleanly to count its commits, N. Then, for every k in 1..=N
//! (and past N while runs still reach k), on a fresh fjall directory, commit k fails and
//! the process dies right there: its tokio runtime is dropped, which cancels every task,
//! without `Runtime::shutdown`. A new process (a new `FjallStore` on the same directory, a
//! new `Runtime`) must finish the workflow with the right output, every effect applied
//! under one idempotency key, and nothing left in the store.
//!
//! Each process does what a user's would: start the instance (which finds it if it
//! exists), raise the event once the workflow waits for it, wait for the output. Raising
//! is not idempotent (each call adds an event), so a process raises it only if no earlier
//! one got it onto the disk.
//!
//! Two ways to die at commit k:
//! - before it reaches the disk: commit k and every later one fail and write nothing;
//! - after it reached the disk: commit k is written and reported failed (an fsync that
//!   failed after the write), and every later one fails and writes nothing, as fjall
//!   refuses every write after a failed one.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_core::record::{Event, Status, WorkItem};
use durable_core::{
    ActivityContext, Error, FjallStore, InstanceStatus, OrchestrationContext, Runtime,
    RuntimeBuilder, Store, activity, orchestrator,
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
/// The durable timer's length.
const TIMER: Duration = Duration::from_millis(3);
/// The external event the test raises once the workflow waits for it, and its payload.
const EVENT: &str = "approve";
const APPROVAL: u64 = 1000;
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
/// continue-as-new; generation 1: a chain, and the output.
#[orchestrator]
async fn tour(ctx: OrchestrationContext, round: Round) -> Result<u64, String> {
    let g = round.generation;
    let a = ctx.call(effect, step(format!("g{g}-a"), round.n)).await?;
    let b = ctx.call(effect, step(format!("g{g}-b"), a)).await?;
    if g > 0 {
        return Ok(b);
    }
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

/// What the workflow returns.
fn expected_output() -> u64 {
    f(f(child_output()))
}

/// What the sub-orchestration returns.
fn child_output() -> u64 {
    let b = f(f(FIRST.n));
    let sum: u64 = (0..FAN).map(|i| f(b + i)).sum();
    f(sum + APPROVAL)
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

fn builder(stores: &Stores, ledger: &Arc<EffectLedger>) -> RuntimeBuilder {
    Runtime::builder(stores.faulty.clone())
        .orchestrator(tour)
        .orchestrator(leaf)
        .activity(effect)
        .state(ledger.clone())
        .state(Disk(stores.disk.clone()))
}

/// How a lifetime ended.
enum End {
    /// The workflow finished with this output; the runtime is still running.
    Finished(u64, Runtime),
    /// A commit failed, and the lifetime ended there.
    Crashed,
}

/// Runs one process lifetime on `stores`: starts a runtime, starts the workflow (or finds
/// it), raises the event when the workflow waits for it and nobody raised it yet, and
/// waits for the output. Returns as soon as a fault is injected: the caller's tokio
/// runtime is then dropped, which is the crash.
async fn live(stores: &Stores, ledger: &Arc<EffectLedger>, case: &str) -> End {
    let crashed = async {
        while stores.injected() == 0 {
            tokio::time::sleep(POLL).await;
        }
    };
    let ended = async {
        tokio::select! {
            biased;
            () = crashed => End::Crashed,
            (output, runtime) = drive(stores, ledger, case) => End::Finished(output, runtime),
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

/// The process's work, as a user would write it. A client call that fails because of an
/// injected fault waits for the crash; any other failure is a bug.
async fn drive(stores: &Stores, ledger: &Arc<EffectLedger>, case: &str) -> (u64, Runtime) {
    let runtime = match builder(stores, ledger).start().await {
        Ok(runtime) => runtime,
        Err(e) => return doomed(stores, e, case).await,
    };
    let client = runtime.client();
    let instance = match client.start(tour, ID, FIRST).await {
        Ok(instance) => instance,
        Err(e) => return doomed(stores, e, case).await,
    };
    let mut raised = false;
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
        if !raised && awaits_event(&stores.disk) {
            if let Err(e) = client.raise_event(ID, EVENT, &APPROVAL).await {
                return doomed(stores, e, case).await;
            }
            raised = true;
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

/// Whether the workflow waits for the event and it was never raised: generation 0 passed
/// its timer, and no `EventRaised` is queued or in its history. (The queue is read first:
/// an event moves from the queue to the history, never back.) Only the test raises it, so
/// a `false` stays `false` until the test raises it.
fn awaits_event(disk: &FjallStore) -> bool {
    let queued = disk.work_items().unwrap().into_iter().any(|(_, item)| {
        matches!(item, WorkItem::Message { instance, event: Event::EventRaised { .. }, .. } if instance == ID)
    });
    let history = disk.history(ID).unwrap();
    let record = disk.instance(ID).unwrap();
    !queued
        && record.is_some_and(|r| r.generation == 0)
        && history
            .iter()
            .any(|e| matches!(e, Event::TimerFired { .. }))
        && !history
            .iter()
            .any(|e| matches!(e, Event::EventRaised { .. }))
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
/// holds its two steps, and nothing is left in the queue or in progress checkpoints.
fn assert_settled(disk: &FjallStore, ledger: &EffectLedger, case: &str) {
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
            let output = postcard::to_allocvec(&expected_output()).unwrap();
            assert_eq!(record.status, Status::Completed { output }, "{case}: {all}");
            assert_eq!(record.generation, 1, "{case}: {all}");
            assert_eq!(steps, (2, 2), "{case}: generation 1 of {id}: {history:?}");
        } else {
            let parent = record.parent.as_ref().map(|p| p.instance.as_str());
            assert_eq!(
                parent,
                Some(ID),
                "{case}: an instance that is no child: {all}"
            );
            let output = postcard::to_allocvec(&child_output()).unwrap();
            assert_eq!(record.status, Status::Completed { output }, "{case}: {all}");
            assert_eq!(steps, (1, 1), "{case}: child {id}: {history:?}");
        }
    }
    assert_eq!(disk.work_items().unwrap(), vec![], "{case}: work left");
    for key in ledger.keys() {
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
    let ledger = Arc::new(EffectLedger::default());
    let case = "without faults";
    let commits = lifetime(async {
        let stores = Stores::open(dir.path(), None, case);
        let End::Finished(output, runtime) = live(&stores, &ledger, case).await else {
            panic!("{case}: a fault was injected");
        };
        let commits = stores.switch.count(Call::Commit);
        assert_eq!(output, expected_output(), "{case}");
        runtime.shutdown().await;
        assert_settled(&stores.disk, &ledger, case);
        commits
    });
    ledger.assert_exactly_once(&expected_effects(), false, case);
    commits
}

/// What the sweep of one mode saw.
#[derive(Debug, Default)]
struct Sweep {
    /// The k the first process reached (the others were past the end of its run).
    reached: Vec<u64>,
    /// Activity executions beyond the first of their key, over all cases.
    reruns: usize,
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
        let ledger = Arc::new(EffectLedger::default());
        // The first process: dies at commit k, or finishes if its run makes fewer (or if
        // commit k, written anyway, completed the workflow and the output was read first).
        let first = format!("{case}, first process");
        let reached = lifetime(async {
            let stores = Stores::open(dir.path(), Some((mode, k)), &first);
            if let End::Finished(output, _) = live(&stores, &ledger, &first).await {
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
            let End::Finished(output, runtime) = live(&stores, &ledger, &next).await else {
                panic!("{next}: a fault without a rule");
            };
            assert_eq!(output, expected_output(), "{next}");
            runtime.shutdown().await;
            assert_settled(&stores.disk, &ledger, &next);
        });
        sweep.reruns += ledger.assert_exactly_once(&expected_effects(), true, &next);
    }
    eprintln!(
        "checkpoints ({mode}): N = {commits} commits; died at commit {:?}; {} activity reruns; {:.1?}",
        sweep.reached,
        sweep.reruns,
        started.elapsed()
    );
    // The last k or two may fall past the end of a run that took fewer turns.
    assert!(
        sweep.reached.len() as u64 + 2 >= commits,
        "{mode}: died at only {:?} of {commits}",
        sweep.reached
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
