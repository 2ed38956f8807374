//! The turn task of an instance: it takes the instance's messages from its inbox, plans
//! a turn over them ([`super::turn_plan`]), commits it through group commit, and once
//! the commit is durable runs the activities it scheduled ([`super::activities`]) and
//! sends what it stored ([`super::outbox`]). A turn that does not run the orchestrator
//! goes to [`super::control`] (a client's request) or [`super::verdicts`] (the runtime's
//! verdict on an instance it cannot run).

use std::sync::Arc;

use durable_store::{StoreError, WorkItem};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::activities;
use super::control;
use super::engine::RETRY_DELAY;
use super::engine::{Busy, Cached, Engine};
use super::entities;
use super::entity_messages;
use super::inbox::Delivery;
use super::lease;
use super::turn_plan::{self, Plan, Turned};
use super::verdicts;
use crate::error::Error;
use crate::handle::BoxFuture;
use crate::replay::turn::Outcome;
use crate::telemetry::{ActivityTrace, metrics, spans};

/// The turn task the engine spawns for an instance whose inbox got work
/// ([`EngineParts::turn_task`](super::engine::EngineParts::turn_task)).
pub(in crate::runtime) fn turn_task(
    engine: Arc<Engine>,
    instance: String,
    busy: Busy,
) -> BoxFuture<()> {
    Box::pin(run_turns(engine, instance, busy))
}

/// Turns `instance` until its inbox is empty. One such task per instance at a time, so an
/// instance's turns never overlap. `_busy` is held until the task ends (an argument
/// rather than a wrapping `async` block, which would hold this future twice over and
/// double the task's size).
async fn run_turns(engine: Arc<Engine>, instance: String, _busy: Busy) {
    loop {
        let runnable = !engine.takes_no_work();
        let Some((messages, lease)) = engine.inboxes().next_turn(&instance, runnable) else {
            return;
        };
        let Some(permit) = engine.turn_permit().await else {
            return;
        };
        // The turn's span is opened by its plan, once the trace it joins is known.
        let turned = turn(&engine, &instance, &messages, permit);
        if let Err(e) = lease::in_turn(lease, turned).await {
            // A store error no retry can mend (a poisoned store, a record that does not
            // decode) parks the instance in memory; its events stay in the store, and the
            // next start tries again.
            // A refusal for another instance the turn writes (a child another worker, or
            // a client, created since the turn read there was none) is not this one lost:
            // the turn runs again, on what the store now holds.
            let other = match &e {
                Error::Store(StoreError::Fenced { what, .. }) => {
                    what.starts_with("instance ") && *what != format!("instance `{instance}`")
                }
                Error::Store(
                    StoreError::HistoryConflict { instance: id, .. }
                    | StoreError::InstanceChanged { instance: id, .. },
                ) => *id != instance,
                _ => false,
            };
            // A lapsed lease is not the instance's: the worker joins again, and the turn
            // runs under the next lease (here or elsewhere).
            let lapsed = matches!(&e, Error::Store(StoreError::LeaseExpired { .. }));
            let permanent = matches!(&e, Error::Store(e) if e.is_permanent()) && !other && !lapsed;
            if permanent {
                tracing::error!(instance, error = %e, "turn not committed; the instance waits for a restart");
            } else {
                tracing::warn!(instance, error = %e, "turn not committed; retrying");
            }
            engine.take_cached(&instance);
            if let Error::Store(StoreError::Fenced { .. } | StoreError::HistoryConflict { .. }) = &e
                && !other
            {
                // Another worker took the instance over (and may have turned it since):
                // its turns run there now.
                engine.let_go(&instance);
            }
            if !(engine.inboxes()).turn_failed(&instance, messages, permanent, lease) {
                return;
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }
}

/// One orchestration turn over `messages` (a client request alone, or events). `permit`
/// is the turn's slot among those that compute at once; it is given back once the turn's
/// commit is queued, before the commit is durable.
async fn turn(
    engine: &Arc<Engine>,
    instance: &str,
    messages: &[Delivery],
    permit: OwnedSemaphorePermit,
) -> Result<(), Error> {
    let started = metrics::started();
    match turn_plan::plan(engine, instance, messages)? {
        Plan::Commit(mut turned) => {
            let span = turned.span.clone();
            // Held until the commit is durable (or refused): the records of entities the
            // turn makes (see `entities::create_if_absent`). Boxed, as most turns send
            // nothing to entities: the common case keeps the task small.
            let creating = if turned.entities.is_empty() {
                Vec::new()
            } else {
                let targets = std::mem::take(&mut turned.entities);
                Box::pin(entity_messages::create_targets(
                    engine,
                    &targets,
                    &mut turned.commit,
                ))
                .await?
            };
            let durable = engine.submit(std::mem::take(&mut turned.commit));
            drop(permit);
            let (written, commit) = durable.instrument(span).await;
            drop(creating);
            written?;
            engine.recovery_watch().committed(instance);
            turned.commit = commit;
            finish(engine, instance, *turned);
            if let Some(started) = started {
                metrics::turn(started.elapsed());
            }
            Ok(())
        }
        // Boxed, as they are rare: the common case above keeps the task small.
        // A stall, a failure or a request reaches a commit too: the instance's watch
        // ends (a stalled one under watch held every suspect after it from running
        // alone, for good).
        other => {
            Box::pin(without_orchestrator(
                engine, instance, messages, other, permit,
            ))
            .await?;
            engine.recovery_watch().committed(instance);
            Ok(())
        }
    }
}

/// The turns that do not run the orchestrator.
async fn without_orchestrator(
    engine: &Arc<Engine>,
    instance: &str,
    messages: &[Delivery],
    plan: Plan,
    permit: OwnedSemaphorePermit,
) -> Result<(), Error> {
    match plan {
        Plan::AckOnly => verdicts::ack_only(engine, messages).await,
        Plan::Request(request) => control::apply(engine, instance, &messages[0], *request).await,
        Plan::Stall(stall) => verdicts::stall(engine, instance, *stall, messages).await,
        Plan::Fail(fail) => verdicts::fail(engine, instance, *fail, messages).await,
        Plan::Entity(record) => {
            let span = spans::entity_turn(instance, engine.worker(), messages.len());
            entities::turn(engine, instance, messages, *record, permit)
                .instrument(span)
                .await
        }
        Plan::Commit(_) => unreachable!("a turn to commit runs the orchestrator"),
    }
}

/// Once a turn's commit is durable: runs the activities it scheduled, sends what it
/// stored, and keeps the execution for the next turn or tells the waiters that the
/// instance finished.
fn finish(engine: &Arc<Engine>, instance: &str, turned: Turned) {
    // Written just before its lease lapsed: what it scheduled and sent is in the store,
    // for the next lease's claim.
    if lease::turn_lease().is_some_and(|lease| lease != engine.worker()) {
        engine.wake_waiters(instance, None);
        return;
    }
    let Turned {
        mut commit,
        outbox,
        run,
        execution,
        outcome,
        span,
        trace,
        ..
    } = turned;
    let _entered = span.enter();
    for (id, item) in commit.enqueued.drain(..) {
        if let WorkItem::Activity(task) = item {
            activities::run(engine, id, task, ActivityTrace::Known(trace.clone()));
        }
    }
    outbox.send(engine, instance, run);
    let (_, record) = commit
        .instances
        .pop()
        .expect("a turn's commit ends with the instance's record");
    match outcome {
        Outcome::Running => engine.keep_cached(
            instance,
            Cached {
                execution: Some(execution),
                record,
            },
        ),
        Outcome::Failed(failure) => {
            tracing::warn!(instance, error = %failure.message, "instance failed");
            engine.notify_finished(instance, &record);
        }
        Outcome::Completed(_) => engine.notify_finished(instance, &record),
        Outcome::ContinuedAsNew { .. } | Outcome::Stalled(_) => {}
    }
}
