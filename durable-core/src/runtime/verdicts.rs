//! The runtime's verdicts on an instance it cannot run, each a turn that does not run the
//! orchestrator ([`super::turns`] hands it here): acknowledge what is for an unknown or
//! finished instance, stall one the code cannot replay, fail one whose orchestrator is
//! missing when the runtime is so configured.

use std::sync::Arc;

use durable_store::{Commit, Event, HistoryAppend, Status};

use super::activities;
use super::dead_letter;
use super::engine::Engine;
use super::entity_messages;
use super::inbox::{Delivery, Run};
use super::outbox::{Outbox, consumed};
use super::turn_plan::{self, FailPlan, StallPlan};
use crate::error::Error;

/// Acknowledges `messages` without turning them (their instance is gone or done).
pub(in crate::runtime) async fn ack_only(
    engine: &Engine,
    messages: &[Delivery],
) -> Result<(), Error> {
    engine.commit(consumed(messages)).await
}

/// Fails an instance whose orchestrator this runtime does not have, acknowledging
/// `messages` and recording the plan's new events (theirs) and the failure in its
/// history.
pub(in crate::runtime) async fn fail(
    engine: &Arc<Engine>,
    instance: &str,
    plan: FailPlan,
    messages: &[Delivery],
) -> Result<(), Error> {
    let FailPlan {
        mut record,
        mut new,
        failure,
    } = plan;
    tracing::warn!(instance, error = %failure.message, "instance failed");
    let mut commit = consumed(messages);
    let mut outbox = Outbox::default();
    new.push(Event::Failed {
        failure: failure.clone(),
    });
    let new = turn_plan::with_turn_time(engine, new);
    let appended = new.len() as u32;
    commit.history.push(HistoryAppend {
        instance: instance.to_string(),
        first: record.history_len,
        events: new,
    });
    record.history_len = record.history_len.saturating_add(appended);
    record.status = Status::Failed { failure };
    record.updated_ms = engine.now_ms();
    dead_letter::remove_marker(instance, &record, &mut commit);
    entity_messages::release_on_end(engine, instance, &record, &mut commit, &mut outbox)?;
    outbox.tell_parent(engine, &record, &mut commit);
    let run = Run::of(&record);
    commit
        .instances
        .push((instance.to_string(), record.clone()));
    engine.commit(commit).await?;
    outbox.send(engine, instance, run);
    engine.notify_finished(instance, &record);
    Ok(())
}

/// Parks an instance: its status says why, its history and queued events are kept
/// (`messages`, those of the turn that stalled, stay in the store for the next start;
/// activity results among them or in its inbox are stored as messages, so that start
/// does not run their activities again).
pub(in crate::runtime) async fn stall(
    engine: &Engine,
    instance: &str,
    plan: StallPlan,
    messages: &[Delivery],
) -> Result<(), Error> {
    let StallPlan {
        mut record,
        failure,
    } = plan;
    let mut commit = Commit::default();
    for delivery in messages {
        activities::store_result(engine, instance, delivery, &mut commit);
    }
    engine.inboxes().stalled(instance, |held| {
        activities::store_held_results(engine, instance, held, &mut commit);
    });
    record.status = Status::Stalled { failure };
    record.updated_ms = engine.now_ms();
    // Its turn reached a commit: its recovery count, if under watch, starts again.
    engine
        .recovery_watch()
        .clear_in(instance, &record, &mut commit);
    commit
        .instances
        .push((instance.to_string(), record.clone()));
    engine.commit(commit).await?;
    engine.notify_finished(instance, &record);
    Ok(())
}
