//! An entity's turn (see the design note in [`super`]): takes the messages due, runs
//! them ([`super::batch`]), commits what they did in one commit, and once it is durable
//! sends it, holds back what waits, and arms the scheduled signals not yet due.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use durable_store::{Commit, Event, InstanceRecord, Status, StoreError};
use tokio::sync::OwnedSemaphorePermit;

use super::batch::{self, Batch, Sent};
use super::{Creating, create_in_turn, operation, recipient};
use crate::clock::millis;
use crate::entity::EntityId;
use crate::error::Error;
use crate::runtime::engine::{Cached, Engine};
use crate::runtime::inbox::{Delivery, Recipient, Run};
use crate::runtime::lease;
use crate::runtime::outbox::{Outbox, consumed};

/// One entity turn over `messages` (every message queued for the entity, those it held
/// back at its last turn first): runs them in order, as its lock allows, then commits the
/// new state and lock owner, what they sent (signals, answers to calls, lock requests
/// passed on, grants) and the messages consumed in one commit, and delivers what it sent
/// once it is durable. The messages that wait go back to the entity's inbox, held.
/// `permit` is the turn's slot among those that compute at once, given back once the
/// commit is queued, as an orchestration turn's is: the entity turns waiting on one fsync
/// are not limited to the number of slots.
///
/// # Errors
///
/// What the commit fails with; the turn task retries it (see `runtime::turns`).
pub(in crate::runtime) async fn turn(
    engine: &Arc<Engine>,
    instance: &str,
    messages: &[Delivery],
    record: InstanceRecord,
    permit: OwnedSemaphorePermit,
) -> Result<(), Error> {
    let mut permit = Some(permit);
    let id: EntityId = instance
        .parse()
        .expect("an entity's record is found only under an entity id");
    let Some(entry) = engine.registry().entity(id.name()) else {
        // On a store this process holds alone, which claims everything.
        tracing::error!(
            entity = instance,
            "operations for an entity type this runtime does not have wait in the store; \
             register it with `RuntimeBuilder::entity`"
        );
        return Ok(());
    };
    // Scheduled signals not yet due stay in the store, and come back at their time.
    let now_ms = engine.now_ms();
    let (due, later): (Vec<&Delivery>, Vec<&Delivery>) = messages
        .iter()
        .partition(|d| due_at(d).is_none_or(|at| at <= now_ms));
    // Armed once nothing of the turn can fail, so that a turn retried does not arm them
    // twice (each arming delivers the message once more).
    let arm_later = || {
        for delivery in &later {
            redeliver_at(engine, instance, (*delivery).clone());
        }
    };
    let entity = batch::Entity {
        id: &id,
        instance,
        dispatch: entry.dispatch,
        max_payload: engine.max_payload(),
    };
    let stored = (!record.input.is_empty()).then(|| record.input.clone());
    let due = due.into_iter().cloned().collect();
    let Ok(batch) = batch::run(&entity, stored, record.parent.clone(), due) else {
        // Nothing sent to it after them may run before them (a client's delete would
        // reset the state they are to run on): the entity stalls here, and its messages
        // wait in the store for a restart.
        (engine.inboxes()).stall_with(instance, messages.to_vec(), engine.lease_in_hand());
        return Ok(());
    };
    let Batch {
        state,
        lock,
        consumed: taken,
        held,
        sent,
    } = batch;
    if taken.is_empty() {
        // Nothing ran: nothing changed.
        arm_later();
        (engine.inboxes()).hold(instance, held, engine.lease_in_hand());
        let execution = None;
        engine.keep_cached(instance, Cached { execution, record });
        return Ok(());
    }
    loop {
        let mut commit = consumed(&taken);
        let mut outbox = Outbox::default();
        // Held until the commit is durable (or refused).
        let mut creating = Vec::new();
        for sent in &sent {
            send(
                engine,
                instance,
                sent,
                &mut commit,
                &mut outbox,
                &mut creating,
            )?;
        }
        let mut record = record.clone();
        record.input = state.clone().unwrap_or_default();
        record.parent = lock.clone();
        record.status = Status::Running;
        record.updated_ms = engine.now_ms();
        commit
            .instances
            .push((instance.to_string(), record.clone()));
        // In a turn, a commit is submitted once (a lapsed lease is not written again).
        let durable = engine.submit(commit);
        drop(permit.take());
        let (written, _) = durable.await;
        drop(creating);
        match written {
            // An entity this turn made was made by another sender meanwhile: send to it.
            Err(Error::Store(StoreError::InstanceChanged { .. })) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        // Written just before its lease lapsed: what it sent is in the store, for the
        // next lease's claim.
        if lease::turn_lease().is_some_and(|lease| lease != engine.worker()) {
            return Ok(());
        }
        arm_later();
        (engine.inboxes()).hold(instance, held, engine.lease_in_hand());
        let run = Run::of(&record);
        let execution = None;
        engine.keep_cached(instance, Cached { execution, record });
        outbox.send(engine, instance, run);
        return Ok(());
    }
}

/// When a scheduled signal is due, milliseconds since the Unix epoch.
fn due_at(delivery: &Delivery) -> Option<u64> {
    match &delivery.event {
        Event::EntityOperation { at_ms, .. } => *at_ms,
        _ => None,
    }
}

/// Hands `delivery`, a scheduled signal for entity `instance`, back to its inbox at its
/// time, never earlier (as [`crate::runtime::timer_arming`] fires a timer). Not tracked, and
/// holding the runtime weakly: a pending signal must not hold up shutdown; its message
/// is in the store, delivered again on the next start.
fn redeliver_at(engine: &Arc<Engine>, instance: &str, delivery: Delivery) {
    let Some(at_ms) = due_at(&delivery) else {
        return;
    };
    let weak = Arc::downgrade(engine);
    let lease = engine.lease_in_hand();
    let instance = instance.to_string();
    let mut due = (engine.clock()).sleep_until(UNIX_EPOCH + Duration::from_millis(at_ms));
    tokio::spawn(async move {
        // Dropped only once the message is queued: a clock that skips time counts the
        // pending signal as work until then.
        (&mut due).await;
        let Some(engine) = weak.upgrade() else {
            return;
        };
        if !engine.takes_no_work() {
            engine.deliver_under(lease, instance, delivery);
        }
        drop(due);
    });
}

/// Adds `sent`, sent by entity `sender`, to `commit` and `outbox`: a message to an
/// entity (with the entity's record if it has none yet), or to an orchestration's run.
fn send<'e>(
    engine: &'e Engine,
    sender: &str,
    sent: &Sent,
    commit: &mut Commit,
    outbox: &mut Outbox,
    creating: &mut Vec<Creating<'e>>,
) -> Result<(), Error> {
    let (target, event) = match sent {
        Sent::Signal(signal) => {
            let at_ms = signal.at.map(millis);
            let input = signal.input.clone();
            let event = operation(signal.operation, input, Some(sender), at_ms);
            (&signal.target, event)
        }
        Sent::Forward { entity, event } => (entity, event.clone()),
        Sent::ToOrchestration { to, event } => {
            let run = Recipient {
                incarnation: to.incarnation,
                generation: Some(to.generation),
            };
            outbox.enqueue(engine, &to.instance, run, event.clone(), commit);
            return Ok(());
        }
    };
    if let Some(guard) = create_in_turn(engine, target, commit)? {
        creating.push(guard);
    }
    outbox.enqueue(engine, &target.to_string(), recipient(), event, commit);
    Ok(())
}
