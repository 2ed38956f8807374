//! Entity turns: how an entity is stored and run (issue 14).
//!
//! # An entity is an instance of the store
//!
//! The entity `@Account@alice` ([`EntityId`]'s instance-id form) is the store instance of
//! that id, so claims, leases, fences, group commit and PostgreSQL work for it as for an
//! orchestration, across any number of workers, with no new table or keyspace. Its
//! [`InstanceRecord`]:
//!
//! | field | for an entity |
//! |---|---|
//! | `orchestrator` | `@Account`: [`ENTITY_MARKER`] and the entity's name. No orchestrator name starts with `@` in practice, and an entity name holds no `@`, so the two never meet; a record is an entity's only if its id also parses as an [`EntityId`] of that name ([`is_entity`]). |
//! | `version` | 0 |
//! | `input` | the state, as JSON (the `input` column in PostgreSQL: `SELECT convert_from(id, 'UTF8'), input FROM durable.instances WHERE orchestrator = '@Account'`); empty (NULL in psql) until an operation commits one: [`Entity::initial`] then |
//! | `status` | `Pending` when made, `Running` from its first turn; never terminal (an entity is removed, not finished) |
//! | `history_len` | 0, always: an entity has no history |
//! | `incarnation` | [`ENTITY_INCARNATION`], always |
//!
//! An entity exists once operated on: the commit that sends its first operation (a
//! client's signal, another entity's turn) writes its record, `Pending` with no state,
//! expecting the id absent (`Commit::expected`), so two senders creating it at once
//! create it once: the store refuses the other's commit (with the whole call it is in),
//! and it goes again as a plain message. Within one process, a client reads the entity
//! absent and writes its record under the start guard of its id ([`Creating`]), waiting
//! for another sender holding it; a turn does not wait, and writes the record expecting
//! it absent all the same (see [`create_if_absent`]): a message committed without its
//! entity's record would be dropped on delivery.
//!
//! The state is the record, rewritten by each turn and handed forward (DTFx keeps entity
//! state in a record passed from one batch to the next, not in a history): nothing grows
//! with the number of operations.
//!
//! # Operations are messages
//!
//! An operation is a `WorkItem::Message` for the entity's id carrying
//! [`Event::EntityOperation`] (operation name, JSON input, sender). Its incarnation is
//! [`ENTITY_INCARNATION`]: a sender addresses an entity by id alone, without reading its
//! record, and a signal to a deleted entity is a signal to the entity made again, as in
//! Durable Functions. Since every entity record has that incarnation, the claim and
//! delivery rules that drop messages for another run never drop an entity's.
//!
//! # A turn
//!
//! `turn_plan::plan` finds the record (cached, or read) and, for an entity's, returns
//! `Plan::Entity`, which `turns.rs` hands to [`turn`] here: no replay, no history.
//!
//! The inbox gives an entity's turn task every message queued for it (one task per
//! instance at a time: turns are serial). The turn ([`turn`]) runs them in order through
//! [`Entity::dispatch`], each on the state the one before left, and commits in ONE
//! commit: the new record (state), the messages consumed, and the signals the
//! operations sent, as messages to their entities (with the records of those that do not
//! exist yet). Once durable, the signals are delivered (in commit order, so the signals
//! of one sender arrive in the order it sent them). An operation that fails (`Err`, a
//! panic, an unknown operation, an input that does not decode) is logged; its state
//! change and signals were dropped by `dispatch`, and the rest of the batch goes on from
//! the state before it. A stored state that does not decode (the type changed
//! incompatibly) fails every operation the same way, so the turn is not committed: the
//! entity's messages stay in the store, and the error is logged with what to do (add
//! `#[serde(default)]`, or deploy code that reads the state); they run on the next start.
//!
//! A scheduled signal (`ctx.signal_at`) is a message like any other, carrying its time
//! (`at_ms`): it is committed with the turn that sent it, and a turn that meets it before
//! its time leaves it in the store (not consumed) and hands it back to the entity's inbox
//! at its time, through the runtime's clock as a durable timer is; after a restart the
//! claim delivers it again, and it waits again. Operations sent after it may run before
//! it: it runs at its time, not in its sender's order.
//!
//! # Registration and claims
//!
//! [`RuntimeBuilder::entity`](super::RuntimeBuilder::entity) registers an [`Entity`]
//! type. On a shared store a worker's claim filter names `(@Name, 0)` for each registered
//! entity beside its orchestrators, so it takes entity instances only of entities it has;
//! a record it creates for an entity it does not have is released for a worker that has
//! it (as a sub-orchestration of an orchestrator it does not have).
//!
//! # Stored formats
//!
//! Postcard records grow compatibly only: [`Event::EntityOperation`] is a new variant at
//! the end of `Event`, so every record an older build wrote reads as before (postcard
//! writes a variant's index, and no older index moved); the fjall format version stays.
//! A store that holds entity messages is not readable by a build without entities (the
//! message does not decode there, an error naming the record). The record fields are
//! reused as the table above says; no field was added.
//!
//! # What users see of it
//!
//! Entities are instances, but not orchestrations: the client's `list` and
//! `count_by_status` leave them out (the stores keep their listing indexes and counters
//! of orchestrations only, `durable_store::is_entity`). The entity client calls
//! (`signal_entity`, `entity_state`, `list_entities`, `delete_entity`,
//! `clean_entity_storage`) are the way to them; an
//! orchestration handle's `status` and `wait` on an entity id return
//! `Error::IsAnEntity` (an entity never finishes, so a wait would never end).
//!
//! [`EntityId`]: crate::entity::EntityId
//! [`Entity`]: crate::entity::Entity
//! [`Entity::initial`]: crate::entity::Entity::initial
//! [`Entity::dispatch`]: crate::entity::Entity::dispatch
//! [`InstanceRecord`]: durable_store::InstanceRecord
//! [`Event::EntityOperation`]: durable_store::Event::EntityOperation

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use durable_store::{Commit, Event, Incarnation, InstanceRecord, Status, StoreError};

use super::engine::{Cached, Engine};
use super::inbox::{Delivery, Recipient, Run};
use super::lease;
use super::outbox::{Outbox, consumed};
use crate::clock::millis;
use crate::entity::{EntityError, EntityId, Signal};
use crate::error::Error;
use crate::registry::{EntityDispatch, Registry};

/// The operation a client's `delete_entity` sends: it resets the entity's state to none
/// (the record stays, so operations queued behind it find their entity). No operation is
/// called so: `$` is not in a Rust identifier.
pub(crate) const DELETE_OPERATION: &str = "$delete";

/// What the `orchestrator` of an entity's record starts with: `@Account`.
pub(crate) const ENTITY_MARKER: char = durable_store::ENTITY_MARKER;

/// The incarnation of every entity's record and of every message to an entity.
pub(crate) const ENTITY_INCARNATION: Incarnation = 1;

/// The `orchestrator` an entity's record holds: `@name`.
pub(crate) fn marker(name: &str) -> String {
    format!("{ENTITY_MARKER}{name}")
}

/// Whether `record`, of instance `id`, is an entity's: its id is an [`EntityId`] whose
/// name its `orchestrator` names.
pub(crate) fn is_entity(id: &str, record: &InstanceRecord) -> bool {
    record
        .orchestrator
        .strip_prefix(ENTITY_MARKER)
        .is_some_and(|name| {
            id.parse::<EntityId>()
                .is_ok_and(|entity| entity.name() == name)
        })
}

/// Whether `record`, of instance `id`, is an entity's of a type `registry` has.
pub(crate) fn is_registered(registry: &Registry, id: &str, record: &InstanceRecord) -> bool {
    is_entity(id, record) && registry.entity(&record.orchestrator[1..]).is_some()
}

/// The record of entity `id` when its first operation is sent: pending, no state.
pub(crate) fn new_record(id: &EntityId, now_ms: u64) -> InstanceRecord {
    InstanceRecord::pending(
        marker(id.name()),
        0,
        Vec::new(),
        now_ms,
        ENTITY_INCARNATION,
        None,
    )
}

/// The message that runs `operation` with `input` on an entity, from `sender`, at once
/// or not before `at_ms` (milliseconds since the Unix epoch).
pub(crate) fn operation(
    operation: &str,
    input: Vec<u8>,
    sender: Option<&str>,
    at_ms: Option<u64>,
) -> Event {
    Event::EntityOperation {
        operation: operation.to_string(),
        input,
        sender: sender.map(str::to_string),
        at_ms,
    }
}

/// Where every message to an entity goes.
pub(crate) fn recipient() -> Recipient {
    Recipient::any_generation(ENTITY_INCARNATION)
}

/// What a batch of operations comes to: the state after the last, and the signals they
/// sent, in order.
struct Batch {
    state: Option<Vec<u8>>,
    signals: Vec<Signal>,
}

/// Runs `messages` in order on `state` (the pure part of a turn). `None` if the stored
/// state does not decode: nothing is to be committed then.
fn run_batch(
    dispatch: EntityDispatch,
    id: &EntityId,
    state: Option<Vec<u8>>,
    messages: &[Delivery],
    max_payload: usize,
) -> Option<Batch> {
    let mut batch = Batch {
        state,
        signals: Vec::new(),
    };
    for delivery in messages {
        let Event::EntityOperation {
            operation, input, ..
        } = &delivery.event
        else {
            tracing::warn!(entity = %id, "a message that is not an entity operation, dropped");
            continue;
        };
        if operation == DELETE_OPERATION {
            batch.state = None;
            continue;
        }
        match dispatch(id, batch.state.as_deref(), operation, input) {
            Ok(done) if done.state.as_ref().is_some_and(|s| s.len() > max_payload) => {
                // Stored, it would be refused: the operation fails, as one that returned
                // `Err` does.
                tracing::warn!(
                    entity = %id,
                    operation,
                    limit = max_payload,
                    "entity operation failed: the state it leaves is over the payload limit \
                     (`RuntimeBuilder::max_payload_bytes`); its effects dropped"
                );
            }
            Ok(done) => {
                if let Some(state) = done.state {
                    batch.state = Some(state);
                }
                batch.signals.extend(done.signals);
            }
            Err(error @ EntityError::UndecodableState { .. }) => {
                tracing::error!(
                    entity = %id,
                    error = %error,
                    "entity turn not run: its stored state does not decode; its operations wait \
                     in the store for code that reads it (add `#[serde(default)]` to fields \
                     added since), and run on the next start"
                );
                return None;
            }
            Err(error) => {
                tracing::warn!(entity = %id, error = %error, "entity operation failed; its effects dropped");
            }
        }
    }
    Some(batch)
}

/// One entity turn over `messages` (every operation queued for the entity): runs them
/// in order, then commits the new state, the signals they sent and the messages consumed
/// in one commit, and delivers the signals once it is durable.
///
/// # Errors
///
/// What the commit fails with; the turn task retries it (see `super::turns`).
pub(in crate::runtime) async fn turn(
    engine: &Arc<Engine>,
    instance: &str,
    messages: &[Delivery],
    record: InstanceRecord,
) -> Result<(), Error> {
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
    if due.is_empty() {
        arm_later();
        engine.keep_cached(
            instance,
            Cached {
                execution: None,
                record,
            },
        );
        return Ok(());
    }
    let messages: Vec<Delivery> = due.into_iter().cloned().collect();
    let messages = &messages[..];
    let stored = (!record.input.is_empty()).then(|| record.input.clone());
    let limit = engine.max_payload();
    let Some(batch) = run_batch(entry.dispatch, &id, stored, messages, limit) else {
        return Ok(());
    };
    loop {
        let mut commit = consumed(messages);
        let mut outbox = Outbox::default();
        // Held until the commit is durable (or refused).
        let mut creating = Vec::new();
        for signal in &batch.signals {
            send_signal(
                engine,
                instance,
                signal,
                &mut commit,
                &mut outbox,
                &mut creating,
            )
            .await?;
        }
        let mut record = record.clone();
        record.input = batch.state.clone().unwrap_or_default();
        record.status = Status::Running;
        record.updated_ms = engine.now_ms();
        commit
            .instances
            .push((instance.to_string(), record.clone()));
        let written = engine.commit_leased(commit).await;
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
        let run = Run::of(&record);
        engine.keep_cached(
            instance,
            Cached {
                execution: None,
                record,
            },
        );
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
/// time, never earlier (as [`super::timer_arming`] fires a timer). Not tracked, and
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

/// Adds `signal`, sent by `sender`, to `commit` and `outbox`: a message to its entity,
/// with the entity's record if it has none yet.
async fn send_signal<'e>(
    engine: &'e Engine,
    sender: &str,
    signal: &Signal,
    commit: &mut Commit,
    outbox: &mut Outbox,
    creating: &mut Vec<Creating<'e>>,
) -> Result<(), Error> {
    let target = signal.target.to_string();
    if let Some(guard) = create_if_absent(engine, &signal.target, commit, false).await? {
        creating.push(guard);
    }
    let at_ms = signal.at.map(millis);
    let event = operation(signal.operation, signal.input.clone(), Some(sender), at_ms);
    outbox.enqueue(engine, &target, recipient(), event, commit);
    Ok(())
}

/// Adds to `commit` the record of entity `id` if it has none, expecting it absent (if
/// it has one, an expectation that it is there: see [`expect_present`]), and returns the
/// guard that keeps every other sender in this process from making it too, to
/// hold until the commit is durable (see [`Creating`]). `wait` says whether to wait for a
/// sender making it now (a client) or not (a turn, which must not wait on others while it
/// holds a turn slot and maybe guards of its own): a turn that finds the guard held reads
/// the record all the same, and adds it, expecting it absent, without a guard (`None`).
/// Counting on the other sender to make it would lose the turn's message: delivered at
/// once, it may reach its entity before the record is durable, and a message for an
/// instance without a record is dropped. If the other sender makes it first, the store
/// refuses this commit (with the whole call it is in: no turn beside it is written
/// without it), and the turn goes again.
///
/// # Errors
///
/// [`Error::Store`] if its record cannot be read.
pub(crate) async fn create_if_absent<'e>(
    engine: &'e Engine,
    id: &EntityId,
    commit: &mut Commit,
    wait: bool,
) -> Result<Option<Creating<'e>>, Error> {
    let instance = id.to_string();
    if commit.instances.iter().any(|(i, _)| *i == instance) {
        return Ok(None);
    }
    if engine.holds(&instance) {
        expect_present(commit, instance);
        return Ok(None);
    }
    let guard = loop {
        let released = engine.start_released();
        if engine.claim_start(&instance) {
            break Some(Creating {
                engine,
                instance: instance.clone(),
            });
        }
        if !wait {
            // Another sender here is making it: made or not when this commit is written.
            break None;
        }
        released.await;
    };
    if engine.holds(&instance) || engine.store().instance(&instance)?.is_some() {
        expect_present(commit, instance);
        return Ok(None);
    }
    commit
        .instances
        .push((instance.clone(), new_record(id, engine.now_ms())));
    commit.expected.push((instance, None));
    Ok(guard)
}

/// Makes `commit`, which sends a message to entity `instance` whose record exists, expect
/// the record: if `Client::clean_entity_storage` removes it first, the store refuses the
/// commit (`StoreError::InstanceChanged`), and the sender goes again, making the entity
/// anew, rather than leave its message to an instance without a record (dropped on
/// delivery).
fn expect_present(commit: &mut Commit, instance: String) {
    if !commit.expected.iter().any(|(id, _)| *id == instance) {
        commit.expected.push((instance, Some(ENTITY_INCARNATION)));
    }
}

/// An entity being made by a commit of this process: while it lives, no other sender
/// here reads the entity as absent. Without it, a sender that read it absent just before
/// it was made could write its record (expecting it absent) in the same store call as a
/// turn of the entity, and PostgreSQL, which keeps the existing row on such a write, would
/// keep it over the turn's new state too.
pub(crate) struct Creating<'e> {
    engine: &'e Engine,
    instance: String,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        self.engine.release_start(&self.instance);
    }
}
