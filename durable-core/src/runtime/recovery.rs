//! Taking work over: what a claim ([`Store::claim`](durable_store::Store::claim)) took
//! for this worker is handed out, when the runtime starts (every work item no live worker
//! holds: the lease of the process that held it died with it) and whenever its claim
//! loop takes more (work another worker left, or lost with its lease). Stalled instances
//! it claims get another chance with the code this runtime has.
//!
//! A claim returns the live instances it took and the work items it took (finished
//! instances cost nothing here); the take-over writes one commit (redelivered tasks count
//! as a new attempt; statuses that change; items no run will take removed), and only then
//! dispatches: messages to their instances, timers armed, tasks run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use durable_store::{ActivityTask, Claim, ClaimedInstance, Commit, Holding, Incarnation};
use durable_store::{InstanceRecord, Status, WorkId, WorkItem};

use super::activities;
use super::dead_letter::run_suspects;
use super::dead_letter::{Marker, Suspect, in_running_order, marker_key, parked_reason};
use super::engine::{Engine, RETRY_DELAY, WORK_ID_BLOCK};
use super::entities::is_entity;
use super::inbox::{Delivery, Outgoing, Recipient, Run};
use super::timer_arming::{self, DEADLINE_SEQ, TimerToArm};
use super::unregistered::Unregistered;
use crate::activity_context::idempotency_key;
use crate::error::Error;
use crate::failure;
use crate::telemetry::ActivityTrace;

/// A timer found in the store, to arm again.
struct StoredTimer {
    instance: String,
    /// The run it is for.
    run: Run,
    timer: TimerToArm,
}

/// The task of an activity this runtime does not have.
struct MissingTask {
    id: WorkId,
    task: ActivityTask,
}

/// What recovery found, and the commit that records it.
#[derive(Default)]
struct Recovery {
    /// Redelivered tasks (with their attempt counted) and changed statuses.
    commit: Commit,
    messages: Vec<Outgoing>,
    timers: Vec<StoredTimer>,
    /// Tasks of activities this runtime does not have, by instance, when instances wait
    /// for missing code.
    missing: HashMap<String, Vec<MissingTask>>,
    /// Stalled instances to run again.
    retried: Vec<String>,
}

/// Work items no run will take, to remove.
#[derive(Default)]
struct Stale {
    ids: Vec<WorkId>,
    /// The progress checkpoints of the activity tasks among them, to remove.
    progress: Vec<(String, Option<Vec<u8>>)>,
}

/// Splits `items` into those a run of an instance may still take and those it never will:
/// the work of an instance that finished, was purged (neither is among the `live`
/// instances), or whose id now runs another incarnation or generation (timers, activity tasks, and the messages for them).
/// Removing them keeps a purged or terminated instance's activities from running again,
/// and its timers from waiting in the store for their time.
fn outstanding(
    items: Vec<(WorkId, WorkItem)>,
    live: &[(String, InstanceRecord)],
) -> (Vec<(WorkId, WorkItem)>, Stale) {
    let runs: HashMap<&str, &InstanceRecord> = live
        .iter()
        .map(|(id, record)| (id.as_str(), record))
        .collect();
    let live = |instance: &str, incarnation: Incarnation, generation: Option<u32>| {
        runs.get(instance).is_some_and(|record| {
            !record.status.is_terminal()
                && record.incarnation == incarnation
                && generation.is_none_or(|g| g == record.generation)
        })
    };
    let mut stale = Stale::default();
    let mut kept = Vec::with_capacity(items.len());
    for (id, item) in items {
        let taken = match &item {
            WorkItem::Message {
                instance,
                incarnation,
                generation,
                ..
            } => live(instance, *incarnation, *generation),
            // An execution deadline spans the generations of its incarnation.
            WorkItem::Timer {
                instance,
                incarnation,
                seq: DEADLINE_SEQ,
                ..
            } => live(instance, *incarnation, None),
            WorkItem::Timer {
                instance,
                incarnation,
                generation,
                ..
            } => live(instance, *incarnation, Some(*generation)),
            WorkItem::Activity(task) => {
                let taken = live(&task.instance, task.incarnation, Some(task.generation));
                if !taken {
                    let key = idempotency_key(
                        &task.instance,
                        task.incarnation,
                        task.generation,
                        task.key_seq,
                    );
                    stale.progress.push((key, None));
                }
                taken
            }
        };
        if taken {
            kept.push((id, item));
        } else {
            stale.ids.push(id);
        }
    }
    (kept, stale)
}

/// Claims work until a claim takes nothing, and takes over each batch: what a runtime
/// does when it starts. Returns how many work items and instances it took. With `retry`
/// (a running runtime's claim loop), a take-over commit the store fails for a while is
/// tried again: what the claim took is held by this worker, and no later claim returns
/// it while the worker lives.
///
/// # Errors
///
/// [`Error::Store`] if the store cannot be read or a commit is refused.
pub(in crate::runtime) async fn claim_all(
    engine: &Arc<Engine>,
    retry: bool,
) -> Result<usize, Error> {
    let mut taken = 0;
    loop {
        engine.forget_left_elsewhere();
        let claim = claim(engine).await?;
        if claim.is_empty() {
            return Ok(taken);
        }
        taken += claim.items.len() + claim.instances.len();
        take_over(engine, claim, retry).await?;
    }
}

/// One claim of the store for this worker, off the runtime's threads.
///
/// On a shared store, an instance it takes that ran on another worker may have sent
/// messages numbered from that worker's block of ids, above this worker's; a claim
/// delivers an instance's messages in id order, so what the instance sends from here
/// would run before what it sent there (an entity would see one orchestration's signals
/// out of the order sent). So this worker numbers from a block reserved now, above every
/// id given out.
async fn claim(engine: &Arc<Engine>) -> Result<Claim, Error> {
    let (store, worker, filter) = (engine.store_arc(), engine.worker(), engine.claim_filter());
    let (claim, renumber) = tokio::task::spawn_blocking(move || {
        let claim = store.claim(worker, &filter)?;
        let moved = claim
            .instances
            .iter()
            .any(|i| i.holding == Holding::Claimed && !matches!(i.record.status, Status::Pending));
        let renumber = if moved && store.is_shared() {
            store
                .reserve_work_ids(WORK_ID_BLOCK)
                .inspect_err(|e| tracing::warn!(error = %e, "cannot reserve work ids"))
                .ok()
        } else {
            None
        };
        Ok::<_, durable_store::StoreError>((claim, renumber))
    })
    .await
    .map_err(|_| Error::ShutDown)??;
    if let Some(first) = renumber {
        engine.renumber_work_ids(first);
    }
    engine.set_claim_retry(claim.retry_after);
    Ok(claim)
}

/// Redelivers the work items of `claim` and retries the stalled instances it took.
///
/// # Errors
///
/// [`Error::Store`] if the take-over's commit is refused.
pub(in crate::runtime) async fn take_over(
    engine: &Arc<Engine>,
    claim: Claim,
    retry: bool,
) -> Result<(), Error> {
    // A clock that skips time holds still until everything taken is handed out.
    let _busy = engine.busy();
    let Claim {
        instances, items, ..
    } = claim;
    let mut claimed = Vec::new();
    let mut live = Vec::with_capacity(instances.len());
    for ClaimedInstance {
        id,
        record,
        holding,
    } in instances
    {
        if holding == Holding::Claimed {
            engine.hold(&id, record.status.kind());
            claimed.push((id.clone(), record.clone()));
        }
        live.push((id, record));
    }
    let (items, stale) = outstanding(items, &live);
    let instances = claimed;
    let mut recovery = sort_work_items(engine, items);
    recovery.commit.dequeued.extend(stale.ids);
    recovery.commit.progress.extend(stale.progress);
    if !recovery.commit.dequeued.is_empty() {
        tracing::info!(
            work_items = recovery.commit.dequeued.len(),
            "removed the work of finished, purged or replaced runs"
        );
    }
    decide_instances(engine, &mut recovery, &instances);
    let suspects = dead_letter_watch(engine, &mut recovery, instances)?;
    let Recovery {
        commit,
        mut messages,
        timers,
        retried,
        ..
    } = recovery;
    // An instance's messages for a generation go before those for any (a client's events
    // and requests): a continue-as-new commit queues the next generation's start and the
    // events it carries over after what a client sent while that turn ran, which came
    // later. (A live runtime puts them first as it delivers them.)
    messages.sort_by_key(|outgoing| outgoing.delivery.generation.is_none());
    let tasks = commit.enqueued.clone();
    let mut commit = commit;
    while !commit.is_empty() {
        let (result, written) = engine.submit(commit).await;
        commit = written;
        match result {
            Err(Error::Store(e)) if retry && !e.is_permanent() && !engine.takes_no_work() => {
                tracing::warn!(error = %e, "taking work over not committed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
            }
            result => {
                result?;
                break;
            }
        }
    }
    // Waiters of the instances it stalled are told, as a turn that stalls tells them.
    for (id, record) in &commit.instances {
        if matches!(record.status, Status::Stalled { .. }) {
            engine.notify_finished(id, record);
        }
    }
    let recovered = messages.len() + tasks.len() + timers.len() + retried.len();
    engine.deliver_all(messages);
    for id in retried {
        engine.poke(id);
    }
    for StoredTimer {
        instance,
        run,
        timer,
    } in timers
    {
        timer_arming::arm(engine, instance, run, timer);
    }
    run_tasks(engine, tasks);
    if recovered > 0 {
        tracing::info!(work_items = recovered, "took over unfinished work");
    }
    if !suspects.is_empty() {
        let engine = engine.clone();
        engine.clone().spawn_boxed(run_suspects(engine, suspects));
    }
    Ok(())
}

/// Runs the activity tasks among `tasks`.
pub(in crate::runtime) fn run_tasks(engine: &Arc<Engine>, tasks: Vec<(WorkId, WorkItem)>) {
    for (id, item) in tasks {
        if let WorkItem::Activity(task) = item {
            // Its turn ran in another process: its trace is in its instance's history.
            activities::run_claimed(engine, id, task, ActivityTrace::Stored);
        }
    }
}

/// Decides, for each claimed instance with work in flight, what its recovery count says
/// (see [`super::dead_letter`]): counted and run as usual, parked, or held back as a
/// suspect (returned, its messages and tasks taken out of `recovery`).
///
/// # Errors
///
/// [`Error::Store`] if a marker cannot be read.
fn dead_letter_watch(
    engine: &Engine,
    recovery: &mut Recovery,
    instances: Vec<(String, InstanceRecord)>,
) -> Result<Vec<Suspect>, Error> {
    let watch = engine.recovery_watch();
    let mut found = Vec::new();
    for (id, record) in instances {
        // An entity's turns run apart from this watch: never parked.
        if record.status.is_terminal() || is_entity(&id, &record) {
            continue;
        }
        let own = |instance: &str| instance == id;
        let has_task = recovery
            .commit
            .enqueued
            .iter()
            .any(|(_, item)| matches!(item, WorkItem::Activity(task) if own(&task.instance)));
        if !has_task && !recovery.messages.iter().any(|o| own(&o.instance)) {
            continue;
        }
        let key = marker_key(&id, record.incarnation);
        let stored = engine.store().progress(&key)?;
        let marker = stored.as_deref().map(Marker::decode).unwrap_or_default();
        found.push((id, record, key, marker));
    }
    // A suspect that ran beside the last one to run alone, which was still running: the
    // crash may be either's, so that one's alone count is taken back.
    let beside: HashSet<String> = found
        .iter()
        .filter_map(|(.., marker)| marker.beside.clone())
        .collect();
    let mut suspects = Vec::new();
    for (id, record, key, mut marker) in found {
        let ran_beside = marker.beside.take().is_some();
        let mut changed = ran_beside;
        if beside.contains(&id) && marker.alone > 0 {
            marker.alone -= 1;
            changed = true;
        }
        let suspended = record.status.waits_for_resume();
        let resumed = recovery.messages.iter().any(|o| {
            o.instance == id && matches!(o.delivery.event, durable_store::Event::ResumeRequested)
        });
        if marker.parked || matches!(record.status, Status::DeadLettered { .. }) {
            if suspended && !resumed {
                // Still parked: its tasks stay in the store, not run, until a resume.
                watch.park(&id, take_tasks(recovery, &id));
                if changed {
                    recovery.commit.progress.push((key, Some(marker.encode())));
                }
                continue;
            }
            // Resumed by an operator (or about to be, by a request this recovery
            // delivers): a new count.
            marker = Marker {
                limit: marker.limit,
                ..Marker::default()
            };
        }
        let Some(limit) = watch.limit(&marker) else {
            continue;
        };
        if suspended && !resumed {
            if changed {
                recovery.commit.progress.push((key, Some(marker.encode())));
            }
            continue;
        }
        if marker.count == 0 {
            marker.count = 1;
            recovery
                .commit
                .progress
                .push((key.clone(), Some(marker.encode())));
            watch.watch(&id, key, marker);
        } else if marker.alone >= limit {
            tracing::error!(
                instance = id,
                recoveries = marker.count,
                alone = marker.alone,
                "instance dead-lettered: its work was in flight at every crash"
            );
            let reason = parked_reason(&marker, limit);
            marker.parked = true;
            recovery.commit.progress.push((key, Some(marker.encode())));
            let mut record = record;
            record.status = Status::DeadLettered { reason };
            record.updated_ms = engine.now_ms();
            recovery.commit.instances.retain(|(other, _)| *other != id);
            recovery.commit.instances.push((id.clone(), record));
            engine.inboxes().found_suspended(id.clone());
            watch.park(&id, take_tasks(recovery, &id));
        } else {
            if changed {
                recovery
                    .commit
                    .progress
                    .push((key.clone(), Some(marker.encode())));
            }
            let tasks = take_tasks(recovery, &id);
            let (messages, others) = std::mem::take(&mut recovery.messages)
                .into_iter()
                .partition(|o| o.instance == id);
            recovery.messages = others;
            let suspect = Suspect {
                id,
                key,
                marker,
                messages,
                tasks,
            };
            suspects.push((ran_beside, suspect));
        }
    }
    Ok(in_running_order(suspects))
}

/// Takes the activity tasks of `instance` out of `recovery`: left in the store as they
/// are, neither counted as a new attempt nor run.
fn take_tasks(recovery: &mut Recovery, instance: &str) -> Vec<(WorkId, WorkItem)> {
    let (tasks, others) = std::mem::take(&mut recovery.commit.enqueued)
        .into_iter()
        .partition(
            |(_, item)| matches!(item, WorkItem::Activity(task) if task.instance == instance),
        );
    recovery.commit.enqueued = others;
    tasks
}

/// Sorts the work items by kind. Tasks that were handed out before the restart may have
/// run: this delivery counts as a new attempt, durably, before they run again.
fn sort_work_items(engine: &Engine, items: Vec<(WorkId, WorkItem)>) -> Recovery {
    let mut recovery = Recovery::default();
    for (id, item) in items {
        match item {
            WorkItem::Activity(task) if engine.waits_for_activity(&task.activity) => recovery
                .missing
                .entry(task.instance.clone())
                .or_default()
                .push(MissingTask { id, task }),
            WorkItem::Activity(mut task) => {
                // A limited activity's task runs here: its re-enqueue below keeps it held.
                engine.note_claimed(id, &task.activity);
                task.attempt += 1;
                recovery
                    .commit
                    .enqueued
                    .push((id, WorkItem::Activity(task)));
            }
            WorkItem::Message {
                instance,
                incarnation,
                generation,
                event,
            } => {
                let to = Recipient {
                    incarnation,
                    generation,
                };
                recovery.messages.push(Outgoing {
                    instance,
                    delivery: Delivery::message(id, to, event),
                });
            }
            WorkItem::Timer {
                instance,
                incarnation,
                generation,
                seq,
                fire_at_ms,
            } => recovery.timers.push(StoredTimer {
                instance,
                run: Run {
                    incarnation,
                    generation,
                },
                timer: TimerToArm {
                    id,
                    seq,
                    fire_at_ms,
                },
            }),
        }
    }
    recovery
}

/// Decides what becomes of each live instance. Stalled instances get another chance with this
/// code: they are running again until their next turn says otherwise. One that waits for
/// a missing activity stalls (again), its task kept, or, if suspended, stalls when
/// resumed. The tasks of finished instances (not among `instances`), of earlier generations (a race lost before a
/// continue-as-new) and of earlier runs of the id hold nothing up: they fail as usual,
/// their results dropped.
fn decide_instances(
    engine: &Engine,
    recovery: &mut Recovery,
    instances: &[(String, InstanceRecord)],
) {
    let mut fail_anyway = Vec::new();
    for (id, record) in instances {
        let (id, mut record) = (id.clone(), record.clone());
        let live = !record.status.is_terminal();
        let (waiting, others): (Vec<_>, Vec<_>) = recovery
            .missing
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .partition(|missing| {
                live && missing.task.incarnation == record.incarnation
                    && missing.task.generation == record.generation
            });
        fail_anyway.extend(others);
        let waiting_for = waiting.first().map(|missing| {
            failure::unregistered_activity(&missing.task.activity, Unregistered::Wait)
        });
        match (&record.status, waiting_for) {
            (status, waiting_for) if status.waits_for_resume() => {
                engine.inboxes().found_suspended(id.clone());
                if let Some(failure) = waiting_for {
                    engine.start_waiting_for_code(id, failure);
                }
            }
            (_, Some(failure)) => {
                tracing::error!(instance = id, error = %failure.message, "instance stalled");
                record.status = Status::Stalled { failure };
                recovery.commit.instances.push((id.clone(), record));
                engine.inboxes().found_stalled(id);
            }
            (Status::Stalled { .. }, None) => {
                record.status = Status::Running;
                recovery.commit.instances.push((id.clone(), record));
                recovery.retried.push(id);
            }
            _ => {}
        }
    }
    // And the tasks of instances that are gone.
    fail_anyway.extend(recovery.missing.drain().flat_map(|(_, tasks)| tasks));
    for MissingTask { id, task } in fail_anyway {
        recovery
            .commit
            .enqueued
            .push((id, WorkItem::Activity(task)));
    }
}
