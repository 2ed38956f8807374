//! Failure injection: a workflow (a chain, then a fan-out) runs on a fjall store wrapped in
//! a `FaultyStore`, and the k-th commit or read fails, for every k the workflow makes. The
//! runtime must never act on or acknowledge what was not written, never lose what was,
//! retry or report the failure, and finish once the store works again.

use std::sync::Arc;
use std::time::Duration;

use durable_core::record::{Event, Status};
use durable_core::{
    ActivityContext, Error, FjallStore, OrchestrationContext, Runtime, Store, StoreError, activity,
    orchestrator,
};
use durable_store::{Call, FaultSwitch, FaultyStore};

use crate::common::{Disk, EffectLedger, Step, lifetime, step};

const WAIT: Duration = Duration::from_secs(30);
/// How soon a waiter hears that the runtime halted, or of an output written before.
const HALT_NOTICE: Duration = Duration::from_secs(2);
/// Branches of the workflow's fan-out.
const FAN: u64 = 3;

/// The workflow's only side effect, recorded in the ledger (which checks that its task
/// was written first).
#[activity]
async fn effect(ctx: ActivityContext, step: Step) -> Result<u64, String> {
    record(&ctx, &step);
    Ok(step.value * 2 + 1)
}

/// Records `step` as the effect `{instance}:{name}`.
fn record(ctx: &ActivityContext, step: &Step) {
    let logical = format!("{}:{}", ctx.instance_id(), step.name);
    ctx.state::<Arc<EffectLedger>>()
        .record(ctx, &ctx.state::<Disk>().0, logical);
}

/// A chain of two steps, then a fan-out of `FAN` steps, summed.
#[orchestrator]
async fn workflow(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(effect, step("a", n)).await?;
    let b = ctx.call(effect, step("b", a)).await?;
    let calls = (0..FAN)
        .map(|i| ctx.call(effect, step(format!("fan-{i}"), b + i)))
        .collect();
    let mut sum = 0;
    for result in ctx.join_all(calls).await {
        sum += result?;
    }
    Ok(sum)
}

fn expected_output(n: u64) -> u64 {
    let f = |x: u64| x * 2 + 1;
    let b = f(f(n));
    (0..FAN).map(|i| f(b + i)).sum()
}

/// The effects of `workflow` (or `fragile_disk`) as each of `ids`.
fn effect_names(ids: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for id in ids {
        names.extend([format!("{id}:a"), format!("{id}:b")]);
        names.extend((0..FAN).map(|i| format!("{id}:fan-{i}")));
    }
    names
}

/// Waits for an approval, then runs the workflow's first step on its payload.
#[orchestrator]
async fn approval(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let n = ctx.wait_event::<u64>("approve").await;
    Ok(ctx.call(effect, step("approved", n)).await?)
}

fn runtime(
    store: &FaultyStore<FjallStore>,
    ledger: &Arc<EffectLedger>,
) -> durable_core::RuntimeBuilder {
    Runtime::builder(store.clone())
        .orchestrator(workflow)
        .orchestrator(approval)
        .activity(effect)
        .state(ledger.clone())
        .state(Disk(store.inner().clone()))
        .state(store.switch())
}

/// Whether `err` is a fault the test injected, as the user sees it.
fn is_injected(err: &Error) -> bool {
    matches!(err, Error::Store(StoreError::Io { detail, .. }) if detail.contains("injected fault"))
}

/// Starts the runtime, retrying while an injected fault fails its recovery.
async fn start_runtime(store: &FaultyStore<FjallStore>, ledger: &Arc<EffectLedger>) -> Runtime {
    loop {
        match runtime(store, ledger).start().await {
            Ok(runtime) => return runtime,
            Err(e) if is_injected(&e) => {}
            Err(e) => panic!("the runtime did not start: {e}"),
        }
    }
}

/// Starts `workflow` as `id`. A start that fails must leave no instance behind; it is then
/// tried again, and exactly one try creates the instance.
async fn start_workflow(runtime: &Runtime, store: &FaultyStore<FjallStore>, id: &str, n: u64) {
    loop {
        match runtime.client().start(workflow, id, n).await {
            Ok(instance) => {
                assert!(instance.is_new(), "{id}: a failed start created it");
                return;
            }
            Err(e) if is_injected(&e) => {
                assert_eq!(
                    store.inner().instance(id).unwrap(),
                    None,
                    "a start that returned {e} left instance {id} behind"
                );
            }
            Err(e) => panic!("start of {id} failed: {e}"),
        }
    }
}

/// Reads `id`'s status and position (the store's record and history, as a tool does),
/// then waits for its output, retrying each while an injected fault fails its read.
async fn wait_output(runtime: &Runtime, id: &str) -> u64 {
    let instance = runtime.client().instance(workflow, id);
    while let Err(e) = instance.status().await {
        assert!(is_injected(&e), "{id}: {e}");
    }
    while let Err(e) = instance.position().await {
        assert!(is_injected(&e), "{id}: {e}");
    }
    loop {
        match instance.wait(WAIT).await {
            Ok(output) => return output,
            Err(e) if is_injected(&e) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("{id}: {e}"),
        }
    }
}

/// Checks what the store holds once everything finished: each instance completed with
/// its output, its history whole, nothing left in the queue.
fn assert_store_settled(store: &FjallStore, ids: &[(&str, u64)], case: &str) {
    for (id, n) in ids {
        let record = store.instance(id).unwrap().expect("the instance exists");
        let output = serde_json::to_vec(&expected_output(*n)).unwrap();
        assert_eq!(record.status, Status::Completed { output }, "{case}: {id}");
        let history = store.history(id).unwrap();
        assert_eq!(record.history_len as usize, history.len(), "{case}: {id}");
        let scheduled = history
            .iter()
            .filter(|e| matches!(e, Event::ActivityScheduled { .. }))
            .count();
        let completed = history
            .iter()
            .filter(|e| matches!(e, Event::ActivityCompleted { .. }))
            .count();
        assert_eq!(
            (scheduled, completed),
            (2 + FAN as usize, 2 + FAN as usize),
            "{case}: {id}: {history:?}"
        );
    }
    assert_eq!(store.work_items().unwrap(), vec![], "{case}: work left");
}

struct Run {
    store: FaultyStore<FjallStore>,
    fjall: FjallStore,
    _dir: tempfile::TempDir,
}

fn faulty(rules: impl FnOnce(FaultyStore<FjallStore>) -> FaultyStore<FjallStore>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let fjall = FjallStore::open(dir.path()).unwrap();
    Run {
        store: rules(FaultyStore::new(fjall.clone())),
        fjall,
        _dir: dir,
    }
}

const IDS: [(&str, u64); 2] = [("w-1", 1), ("w-2", 2)];

/// Runs the workflow twice at once on `run`; returns the switch, to read its counters.
async fn run_workflows(run: &Run, case: &str) -> FaultSwitch {
    let ledger = Arc::new(EffectLedger::default());
    let runtime = start_runtime(&run.store, &ledger).await;
    for (id, n) in IDS {
        start_workflow(&runtime, &run.store, id, n).await;
    }
    for (id, n) in IDS {
        assert_eq!(
            wait_output(&runtime, id).await,
            expected_output(n),
            "{case}"
        );
    }
    runtime.shutdown().await;
    assert_store_settled(&run.fjall, &IDS, case);
    ledger.assert_exactly_once(&effect_names(&IDS.map(|(id, _)| id)), false, case);
    run.store.switch()
}

/// How many calls of kind `call` a run without faults makes (batching varies a little, so
/// a sweep goes a few past it).
async fn calls_without_faults(call: Call) -> u64 {
    let run = faulty(|s| s);
    run_workflows(&run, "without faults").await.count(call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_anywhere_is_retried_or_reported_and_the_workflow_completes() {
    let commits = calls_without_faults(Call::Commit).await;
    assert!(commits >= 8, "{commits} commits");
    let mut hit = 0;
    for k in 1..=commits + 2 {
        let case = format!("commit {k} of {commits} fails");
        let run = faulty(|s| s.fail_commit(k));
        let switch = run_workflows(&run, &case).await;
        let reached = u64::from(switch.count(Call::Commit) >= k);
        assert_eq!(switch.injected(), reached, "{case}");
        hit += reached;
    }
    assert!(hit * 2 >= commits, "only {hit} of {commits} commits failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_anywhere_fails_every_commit_it_carries_and_they_are_retried() {
    let writes = calls_without_faults(Call::Write).await;
    for k in 1..=writes + 1 {
        let case = format!("write {k} of {writes} fails");
        let run = faulty(|s| s.fail_call(Call::Write, k));
        let switch = run_workflows(&run, &case).await;
        let reached = u64::from(switch.count(Call::Write) >= k);
        assert_eq!(switch.injected(), reached, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_failed_commits_in_a_row_are_retried_until_one_succeeds() {
    let commits = calls_without_faults(Call::Commit).await;
    for k in (1..=commits).step_by(2) {
        let case = format!("commits {k} to {} fail", k + 3);
        let run = faulty(|s| s.fail_commits_from(k).until(k + 4));
        run_workflows(&run, &case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_anywhere_is_retried_or_reported_and_the_workflow_completes() {
    let reads = calls_without_faults(Call::Read).await;
    assert!(reads >= 4, "{reads} reads");
    let mut hit = 0;
    for k in 1..=reads + 2 {
        let case = format!("read {k} of {reads} fails");
        let run = faulty(|s| s.fail_read(k));
        let switch = run_workflows(&run, &case).await;
        let reached = u64::from(switch.count(Call::Read) >= k);
        assert_eq!(switch.injected(), reached, "{case}");
        hit += reached;
    }
    assert!(hit * 2 >= reads, "only {hit} of {reads} reads failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_was_not_written_returns_an_error_and_creates_nothing() {
    // Recovering an empty store writes nothing: the first commit is the start.
    let run = faulty(|s| s.fail_commit(1));
    let ledger = Arc::new(EffectLedger::default());
    let runtime = start_runtime(&run.store, &ledger).await;
    let client = runtime.client();
    let err = client.start(workflow, "w", 5).await.unwrap_err();
    assert!(is_injected(&err), "{err:?}");
    assert!(err.to_string().contains("storage I/O failed"), "{err}");
    assert_eq!(run.fjall.instance("w").unwrap(), None);
    assert_eq!(run.fjall.work_items().unwrap(), vec![]);
    assert!(matches!(client.record("w").await, Ok(None)));
    // The id is free: the next start creates it, and it runs once.
    let instance = client.start(workflow, "w", 5).await.unwrap();
    assert!(instance.is_new());
    assert_eq!(instance.wait(WAIT).await.unwrap(), expected_output(5));
    runtime.shutdown().await;
    ledger.assert_exactly_once(&effect_names(&["w"]), false, "start fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_was_not_written_returns_an_error_and_never_arrives() {
    let run = faulty(|s| s.fail_commit(2));
    let ledger = Arc::new(EffectLedger::default());
    let runtime = start_runtime(&run.store, &ledger).await;
    let client = runtime.client();
    let instance = client.start(approval, "a", ()).await.unwrap();
    // Commit 2 is the event, or the instance's first turn, which is retried; either way
    // the first event the client was told about is the one that arrives.
    let mut raised = None;
    for n in [10_u64, 20, 30] {
        match instance.raise_event("approve", &n).await {
            Ok(()) => {
                raised = Some(n);
                break;
            }
            Err(e) => assert!(is_injected(&e), "{e:?}"),
        }
    }
    let raised = raised.expect("an event was raised");
    assert_eq!(instance.wait(WAIT).await.unwrap(), raised * 2 + 1);
    let events: Vec<_> = run
        .fjall
        .history("a")
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e, Event::EventRaised { .. }))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    runtime.shutdown().await;
}

/// Each read is a round trip to the server on PostgreSQL: a worker does not read back
/// what it wrote itself. Starting an instance, its turns, and a wait on it read nothing;
/// raising the event reads the record once (for the run it is addressed to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reads_back_nothing_it_wrote_itself() {
    let run = faulty(|s| s);
    let ledger = Arc::new(EffectLedger::default());
    let runtime = start_runtime(&run.store, &ledger).await;
    let client = runtime.client();
    let switch = run.store.switch();
    let reads = || switch.count(Call::Instance) + switch.count(Call::History);
    let before = reads();
    let instance = client.start(approval, "a", ()).await.unwrap();
    let waiting = tokio::spawn({
        let instance = client.instance(approval, "a");
        async move { instance.wait(WAIT).await }
    });
    // The instance waits for the event, and the wait for the instance.
    while run.fjall.history("a").unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reads() - before, 0, "start, first turn and wait");
    instance.raise_event("approve", &10_u64).await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 21);
    assert_eq!(reads() - before, 1, "the raise's read of the record");
    // A second start of the id is refused by the store, not read first.
    assert!(!client.start(approval, "a", ()).await.unwrap().is_new());
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_whose_recovery_cannot_read_the_store_does_not_start() {
    for call in [Call::Claim] {
        let run = faulty(|s| s.fail_call(call, 1));
        let ledger = Arc::new(EffectLedger::default());
        let err = runtime(&run.store, &ledger).start().await.unwrap_err();
        assert!(is_injected(&err), "{call}: {err:?}");
        // The next try finds a working store and runs.
        let runtime = start_runtime(&run.store, &ledger).await;
        start_workflow(&runtime, &run.store, "w", 1).await;
        assert_eq!(wait_output(&runtime, "w").await, expected_output(1));
        runtime.shutdown().await;
    }
}

/// Breaks the disk when it runs for step `b`, so the result of `a`'s turn and everything
/// after must wait for the disk to heal.
#[activity]
async fn breaks_disk(ctx: ActivityContext, step: Step) -> Result<u64, String> {
    let switch = ctx.state::<FaultSwitch>();
    if step.name == "b" {
        switch.break_disk();
    }
    record(&ctx, &step);
    Ok(step.value * 2 + 1)
}

#[orchestrator]
async fn fragile_disk(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(breaks_disk, step("a", n)).await?;
    let b = ctx.call(breaks_disk, step("b", a)).await?;
    let calls = (0..FAN)
        .map(|i| ctx.call(breaks_disk, step(format!("fan-{i}"), b + i)))
        .collect();
    let mut sum = 0;
    for result in ctx.join_all(calls).await {
        sum += result?;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_disk_stalls_the_workflow_until_healed_then_it_completes() {
    let run = faulty(|s| s);
    let switch = run.store.switch();
    let ledger = Arc::new(EffectLedger::default());
    let runtime = runtime(&run.store, &ledger)
        .orchestrator(fragile_disk)
        .activity(breaks_disk)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(fragile_disk, "d", 1).await.unwrap();
    for _ in 0..1000 {
        if switch.is_broken() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(switch.is_broken(), "step b never ran");
    // While the disk is broken, clients are told so.
    let err = instance.status().await.unwrap_err();
    assert!(is_injected(&err), "{err:?}");
    let err = client.start(workflow, "refused", 1).await.unwrap_err();
    assert!(is_injected(&err), "{err:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let failed = switch.injected();
    assert!(
        failed >= 3,
        "the runtime retried the result of b: {failed} failures"
    );
    switch.heal();
    assert_eq!(instance.wait(WAIT).await.unwrap(), expected_output(1));
    assert_eq!(run.fjall.instance("refused").unwrap(), None);
    assert_eq!(run.fjall.work_items().unwrap(), vec![]);
    runtime.shutdown().await;
    ledger.assert_exactly_once(&effect_names(&["d"]), false, "a broken disk");
}

/// Runs once the test opens the gate.
#[activity]
async fn held(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    let gate = ctx.state::<Arc<tokio::sync::Notify>>();
    gate.notified().await;
    Ok(n + 1)
}

#[orchestrator]
async fn held_flow(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(held, n).await?)
}

/// FAILS today: `Runtime::shutdown` never returns while the store fails, because the
/// commit of an activity result that arrives during shutdown is retried forever, and
/// shutdown waits for it.
#[test]
fn shutdown_returns_while_the_disk_is_broken_and_the_work_resumes_after() {
    let run = faulty(|s| s);
    let switch = run.store.switch();
    let ledger = Arc::new(EffectLedger::default());
    let gate = Arc::new(tokio::sync::Notify::new());
    lifetime(async {
        let runtime = runtime(&run.store, &ledger)
            .orchestrator(held_flow)
            .activity(held)
            .state(gate.clone())
            .start()
            .await
            .unwrap();
        runtime.client().start(held_flow, "h", 1).await.unwrap();
        for _ in 0..1000 {
            let history = run.fjall.history("h").unwrap();
            if history
                .iter()
                .any(|e| matches!(e, Event::ActivityScheduled { .. }))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        switch.break_disk();
        // Shutdown begins, then the running activity finishes: its result cannot be
        // written, and shutdown must not wait for the disk to heal.
        let shutdown = tokio::spawn(runtime.shutdown());
        tokio::time::sleep(Duration::from_millis(100)).await;
        gate.notify_one();
        let shutdown = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
        assert!(
            shutdown.is_ok(),
            "shutdown hung while the disk was broken: the activity result's commit is retried forever"
        );
    });
    switch.heal();
    lifetime(async {
        let gate = Arc::new(tokio::sync::Notify::new());
        gate.notify_one();
        let runtime = runtime(&run.store, &ledger)
            .orchestrator(held_flow)
            .activity(held)
            .state(gate)
            .start()
            .await
            .unwrap();
        let output = runtime.client().instance(held_flow, "h").wait(WAIT).await;
        assert_eq!(output.unwrap(), 2);
        runtime.shutdown().await;
    });
}

/// A commit that fails after it was written (a failed fsync) leaves the runtime unsure of
/// what is on disk. Whatever it did then, a restart finishes every instance with every
/// effect under one key: nothing written is lost. (Today most such instances wait for
/// that restart: the retried turn finds its work already written and dispatches none of
/// it. With fjall a failed fsync makes the database refuse every later write anyway, so
/// a restart is needed there too; the positions that needed one are printed.)
#[test]
fn a_commit_written_but_reported_failed_is_not_lost_across_a_restart() {
    let commits = lifetime(calls_without_faults(Call::Commit));
    let mut stuck = Vec::new();
    for k in 1..=commits + 1 {
        let case = format!("commit {k} written, then reported failed");
        let run = faulty(|s| s.fail_commit(k).written_anyway());
        let ledger = Arc::new(EffectLedger::default());
        let finished = lifetime(async {
            let runtime = start_runtime(&run.store, &ledger).await;
            for (id, n) in IDS {
                // A start reported failed may have been written: starting again finds it.
                loop {
                    match runtime.client().start(workflow, id, n).await {
                        Ok(_) => break,
                        Err(e) if is_injected(&e) => {}
                        Err(e) => panic!("{case}: {e}"),
                    }
                }
            }
            let mut finished = true;
            for (id, _) in IDS {
                let instance = runtime.client().instance(workflow, id);
                finished &= instance.wait(Duration::from_millis(1500)).await.is_ok();
            }
            finished
        });
        if !finished {
            stuck.push(k);
        }
        lifetime(async {
            let runtime = start_runtime(&run.store, &ledger).await;
            for (id, n) in IDS {
                assert_eq!(
                    wait_output(&runtime, id).await,
                    expected_output(n),
                    "{case}"
                );
            }
            runtime.shutdown().await;
        });
        assert_store_settled(&run.fjall, &IDS, &case);
        ledger.assert_exactly_once(&effect_names(&IDS.map(|(id, _)| id)), true, &case);
    }
    eprintln!("commits written but reported failed that needed a restart to finish: {stuck:?}");
}

/// A store that refuses every write after one failed (as fjall does after a failed fsync)
/// halts the runtime: a waiter hears of it at once (or gets the output of an instance that
/// completed before), nothing is retried in vain, and a runtime on the reopened store
/// finishes the work, each effect once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_all_writes_halts_the_runtime_and_a_restart_finishes_the_work() {
    let commits = calls_without_faults(Call::Commit).await;
    let mut halted = 0;
    for k in 1..=commits {
        for anyway in [false, true] {
            let case = format!(
                "commit {k} of {commits} fails{} and the store refuses writes after it",
                if anyway { " after its write" } else { "" }
            );
            let run = faulty(|s| {
                let s = s.fail_commit(k).poison_on_failure();
                if anyway { s.written_anyway() } else { s }
            });
            let switch = run.store.switch();
            let ledger = Arc::new(EffectLedger::default());
            let runtime = runtime(&run.store, &ledger).start().await.unwrap();
            for (id, n) in IDS {
                // A start that failed is made again after the restart.
                let _ = runtime.client().start(workflow, id, n).await;
            }
            let waited = tokio::time::Instant::now();
            let mut outcomes = Vec::new();
            for (id, _) in IDS {
                let instance = runtime.client().instance(workflow, id);
                outcomes.push(instance.wait(HALT_NOTICE).await);
            }
            let waiting = waited.elapsed();
            // The disk is read only now, so it shows what each wait saw: a wait returns
            // `Poisoned` only once the runtime halted, and nothing is written after that;
            // one that returned an output saw the instance completed, which it stays.
            for ((id, n), outcome) in IDS.into_iter().zip(outcomes) {
                let status = run.fjall.instance(id).unwrap().map(|r| r.status);
                match (&status, outcome) {
                    (Some(Status::Completed { .. }), Ok(output)) => {
                        assert_eq!(output, expected_output(n), "{case}: {id}");
                    }
                    (
                        Some(Status::Pending | Status::Running),
                        Err(Error::Store(StoreError::Poisoned { .. })),
                    ) => {}
                    // Its start never reached the disk.
                    (None, Err(Error::InstanceNotFound(_))) if switch.is_poisoned() => {}
                    (status, outcome) => {
                        panic!("{case}: {id} is {status:?} on disk, yet wait returned {outcome:?}")
                    }
                }
            }
            assert!(waiting < HALT_NOTICE, "{case}: waiting took {waiting:?}");
            if switch.is_poisoned() {
                halted += 1;
            }
            // (Watched for one k of each kind: each look takes a second.)
            if switch.is_poisoned() && k == commits / 2 {
                // Halted: once what was under way settles, nothing knocks on the store
                // any more (a retry would, every 200 ms).
                tokio::time::sleep(Duration::from_millis(300)).await;
                let writes = switch.count(Call::Write);
                tokio::time::sleep(Duration::from_millis(600)).await;
                assert_eq!(switch.count(Call::Write), writes, "{case}: writes go on");
                let err = runtime
                    .client()
                    .start(workflow, "late", 1)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::Store(StoreError::Poisoned { .. })),
                    "{case}: {err:?}"
                );
            }
            runtime.shutdown().await;

            // The restart: a new process opens the store again.
            let reopened = FaultyStore::new(run.fjall.clone());
            let runtime = start_runtime(&reopened, &ledger).await;
            for (id, n) in IDS {
                runtime.client().start(workflow, id, n).await.unwrap();
                assert_eq!(
                    wait_output(&runtime, id).await,
                    expected_output(n),
                    "{case}"
                );
            }
            runtime.shutdown().await;
            assert_store_settled(&run.fjall, &IDS, &case);
            ledger.assert_exactly_once(&effect_names(&IDS.map(|(id, _)| id)), true, &case);
        }
    }
    assert!(halted >= commits, "only {halted} runs halted");
}
