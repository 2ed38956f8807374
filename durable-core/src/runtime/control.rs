//! A client's requests about an instance: terminate, suspend, resume. Each comes as a
//! message of its own and is applied in a turn of its own, without running the
//! orchestrator ([`super::turns`] hands it here). A resume of a dead-lettered instance
//! runs the activity tasks parked with it here at once; a terminate removes them.

use std::sync::Arc;

use durable_store::{Commit, Event, HistoryAppend, Status, WorkItem};

use super::activities;
use super::dead_letter;
use super::engine::{Cached, Engine};
use super::entity_messages;
use super::inbox::{Delivery, Run};
use super::outbox::Outbox;
use super::recovery;
use super::turn_plan::{self, RequestPlan};
use crate::activity_context::idempotency_key;
use crate::error::Error;

/// Applies `request` (a terminate, suspend or resume) to `instance`.
pub(in crate::runtime) async fn apply(
    engine: &Arc<Engine>,
    instance: &str,
    request: &Delivery,
    plan: RequestPlan,
) -> Result<(), Error> {
    let RequestPlan {
        execution,
        mut record,
    } = plan;
    let mut commit = Commit {
        dequeued: vec![request.id],
        ..Commit::default()
    };
    let mut outbox = Outbox::default();
    let mut keep = execution;
    let mut resumed_tasks = Vec::new();
    match &request.event {
        Event::TerminateRequested { reason } => {
            record.status = Status::Terminated {
                reason: reason.clone(),
            };
            keep = None;
            dead_letter::remove_marker(instance, &record, &mut commit);
            // The tasks it was dead-lettered with will never run.
            for (id, item) in engine.recovery_watch().take_parked(instance) {
                commit.dequeued.push(id);
                if let WorkItem::Activity(task) = item {
                    let key = idempotency_key(
                        &task.instance,
                        task.incarnation,
                        task.generation,
                        task.key_seq,
                    );
                    commit.progress.push((key, None));
                }
            }
            entity_messages::release_on_end(engine, instance, &record, &mut commit, &mut outbox)?;
            outbox.tell_parent(engine, &record, &mut commit);
        }
        Event::SuspendRequested { reason } => {
            record.status = Status::Suspended {
                reason: reason.clone(),
            };
            // From now on results wait in the store, not in memory, until it resumes.
            engine.inboxes().suspended(instance, |held| {
                activities::store_held_results(engine, instance, held, &mut commit);
            });
        }
        // A suspended instance that waits for missing code stalls when resumed.
        _ => {
            record.status = match engine.missing_code_of(instance) {
                Some(failure) => Status::Stalled { failure },
                None => Status::Running,
            };
            // A dead-lettered one's tasks, kept in the store, run now (their attempt
            // counted as they were taken over).
            resumed_tasks = engine.recovery_watch().take_parked(instance);
            commit.enqueued.clone_from(&resumed_tasks);
        }
    }
    commit.history.push(HistoryAppend {
        instance: instance.to_string(),
        first: record.history_len,
        events: turn_plan::with_turn_time(engine, vec![request.event.clone()]),
    });
    // The request, behind its turn's time.
    record.history_len += 2;
    record.updated_ms = engine.now_ms();
    commit
        .instances
        .push((instance.to_string(), record.clone()));
    engine.commit(commit).await?;
    // Resumed or terminated, it waits for nothing any more (a reused id must not inherit
    // the wait); forgotten once that is durable, so a retried turn still knows.
    if !record.status.waits_for_resume() {
        engine.stop_waiting_for_code(instance);
    }
    engine.inboxes().request_committed(instance, &record.status);
    outbox.send(engine, instance, Run::of(&record));
    recovery::run_tasks(engine, resumed_tasks);
    let stalled_now = matches!(record.status, Status::Stalled { .. });
    let stopped = record.status.is_terminal() || stalled_now;
    if stopped {
        engine.notify_finished(instance, &record);
    } else if let Some(execution) = keep {
        engine.keep_cached(
            instance,
            Cached {
                execution: Some(execution),
                record,
            },
        );
    }
    Ok(())
}
