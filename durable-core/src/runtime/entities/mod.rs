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
//! | `parent` | the lock owner: the orchestration run and lock step whose critical section holds the entity (see "Locks"); `None` while unlocked |
//!
//! An entity exists once operated on: the commit that sends its first operation (a
//! client's signal, another entity's turn, an orchestration's call, signal or lock
//! request) writes its record, `Pending` with no state,
//! expecting the id absent (`Commit::expected`), so two senders creating it at once
//! create it once: the store refuses the other's commit (with the whole call it is in),
//! and it goes again as a plain message. Within one process, a client reads the entity
//! absent and writes its record under the start guard of its id ([`Creating`]), waiting
//! for another sender holding it; a turn does not wait, and writes the record expecting
//! it absent all the same (see [`create_if_absent`], and [`create_in_turn`], its form for
//! a turn, an entity's or an orchestration's): a message committed without its entity's
//! record would be dropped on delivery.
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
//! `Plan::Entity`, which `turns.rs` hands to [`turn()`] here (`turn.rs`): no replay, no
//! history.
//!
//! The inbox gives an entity's turn task every message queued for it (one task per
//! instance at a time: turns are serial), those its last turn held back first (see
//! "Locks"). The pure step (`batch.rs`) runs them in arrival order, as the lock allows,
//! through [`Entity::dispatch`], each operation on the state the one before left, and
//! the turn commits in ONE commit: the new record (state and lock owner), the messages
//! consumed, and what they sent: signals, as messages to their entities (with the
//! records of those that do not exist yet), answers to calls, lock requests passed on,
//! grants. Once durable, what it sent is delivered (in commit order, so the messages of
//! one sender arrive in the order it sent them), and what waits goes back to the inbox,
//! unacknowledged. A turn that ran nothing (all of it waits) commits nothing. An
//! operation that fails (`Err`, a panic, an unknown operation, an input that does not
//! decode, a state or output over the payload limit) is logged (a signal's) or answered
//! (a call's); its state change and signals are dropped, and the rest of the batch goes
//! on from the state before it. A stored state that does not decode (the type changed
//! incompatibly) fails every operation the same way, so the turn is not committed: the
//! entity's messages stay in the store, and the error is logged with what to do (add
//! `#[serde(default)]`, or deploy code that reads the state); they run on the next start.
//! Until then the entity is stalled in this process: nothing sent to it after them runs
//! before them (a client's delete would reset the state they are to run on).
//!
//! # Calls
//!
//! An orchestration's call is an [`Event::EntityCall`] message naming its caller (a
//! [`ParentLink`]: the orchestration, its incarnation and generation, the calling step).
//! It runs as a signal's operation does, and its answer goes in the same commit as the
//! state it left: `EntityCompleted{seq, output}`, or `EntityFailed{seq, failure}` (the
//! failure as [`EntityError::failure`] maps it: `Returned` with the `Err`'s JSON,
//! `Panicked`, `Decode` for an input that does not decode, `Unregistered` for an unknown
//! operation, `TooLarge` for a state or output over the limit), a `WorkItem::Message` to
//! the caller's run (`incarnation`, `generation: Some(..)`), delivered after the commit
//! as an activity result or a child's completion is. So under kill -9 at any moment a
//! call's state change and its answer happen together, once: the message that carries
//! the call is consumed by that same commit.
//!
//! # Locks
//!
//! A critical section of an orchestration (DTFx's `SchedulerState.LockedBy`, kept in the
//! record, as DTFx keeps it in the entity's state): its lock step sends
//! [`Event::EntityLock`] `{owner, entities, position: 0}` to the first of `entities`
//! (sorted, no duplicates: one global order, so two sections never deadlock). An entity
//! it reaches while unlocked locks itself for `owner` (its record's `parent`) and, in the
//! same commit, passes the request to `entities[position + 1]`, or, from the last, sends
//! `EntityLockGranted{seq: owner.seq}` to the owner's run.
//!
//! While locked, an entity runs only the calls of its owner's run (same instance,
//! incarnation and generation), wherever they are in its queue, and its owner's
//! `EntityUnlock`; everything else waits (signals, other callers' calls, other lock
//! requests, a client's delete): left unconsumed in the store, held back in the inbox
//! (`Inbox::held`), offered again whenever something new comes, and after a restart
//! delivered again by the claim and held back again, since the record still names the
//! owner. Once unlocked, what waited runs in arrival order (DTFx's `MayDequeue`), so each
//! sender's messages run in the order it sent them; a lock request among them locks the
//! entity again, and what comes after it waits again.
//!
//! An `EntityUnlock` that reaches an entity not locked by its owner (the orchestration
//! ended while its request was on its way) waits, holding up nothing, until that owner's
//! `EntityLock` comes: both are consumed, the entity does not lock, and the request goes
//! on (the grant it ends in is dropped by the ended orchestration). An unlock that came
//! after its request (both waiting behind another's lock) is the end of its section: the
//! entity locks for the owner and unlocks at once, in the same turn. The orchestration
//! unlocks every entity of a set it did not release, so no entity stays locked for an
//! orchestration that ended. An `EntityLock` reaching an entity already locked by its
//! owner is the same request again (a turn retried after a commit that was reported
//! failed but written, its message handed back): it is consumed and not passed on, since
//! the commit that locked the entity passed it on. (A request that came again after the
//! entity was unlocked would lock it again; nothing sends one: every message is consumed
//! by the commit that runs it.)
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
//! Postcard records grow compatibly only: [`Event::EntityOperation`] and the variants of
//! calls and locks after it are new variants at the end of `Event`, so every record an older build wrote reads as before (postcard
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
//! (`signal_entity`, `signal_entity_at`, `entity_state`, `list_entities`,
//! `delete_entity`, `clean_entity_storage`) are the way to them; an
//! orchestration handle's `status` and `wait` on an entity id return
//! `Error::IsAnEntity` (an entity never finishes, so a wait would never end).
//!
//! A locked entity shows it only in its record (`parent`, the owner); its state reads as
//! usual, the last committed. A client's signal or delete sent to it is durable at once
//! and runs when the section ends; an entity stays locked as long as its owner's section
//! runs (no timeout, as in Durable Functions), and at most until the owner ends.
//!
//! [`EntityId`]: crate::entity::EntityId
//! [`Entity`]: crate::entity::Entity
//! [`Entity::initial`]: crate::entity::Entity::initial
//! [`Entity::dispatch`]: crate::entity::Entity::dispatch
//! [`InstanceRecord`]: durable_store::InstanceRecord
//! [`Event::EntityOperation`]: durable_store::Event::EntityOperation
//! [`Event::EntityCall`]: durable_store::Event::EntityCall
//! [`Event::EntityLock`]: durable_store::Event::EntityLock
//! [`ParentLink`]: durable_store::ParentLink
//! [`EntityError::failure`]: crate::entity::EntityError

use durable_store::{Commit, Event, Incarnation, InstanceRecord};

use super::engine::Engine;
use super::inbox::Recipient;
use crate::entity::EntityId;
use crate::error::Error;
use crate::registry::Registry;

mod batch;
#[cfg(test)]
mod tests;
mod turn;

pub(in crate::runtime) use turn::turn;

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
    if !wait {
        return create_in_turn(engine, id, commit);
    }
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
            break Creating {
                engine,
                instance: instance.clone(),
            };
        }
        released.await;
    };
    Ok(add_if_absent(engine, id, commit, &instance)?.then_some(guard))
}

/// [`create_if_absent`] for a turn (an entity's, an orchestration's: a sender that does
/// not wait), which need not be async: adds to `commit` the record of entity `id` if it
/// has none, expecting it absent, and returns the guard to hold until the commit is
/// durable, or `None` if another sender here holds it (the record is added all the
/// same, without a guard) or there is nothing to make.
///
/// # Errors
///
/// [`Error::Store`] if its record cannot be read.
pub(crate) fn create_in_turn<'e>(
    engine: &'e Engine,
    id: &EntityId,
    commit: &mut Commit,
) -> Result<Option<Creating<'e>>, Error> {
    let instance = id.to_string();
    if commit.instances.iter().any(|(i, _)| *i == instance) {
        return Ok(None);
    }
    if engine.holds(&instance) {
        expect_present(commit, instance);
        return Ok(None);
    }
    // Another sender here may be making it: made or not when this commit is written.
    let guard = engine.claim_start(&instance).then(|| Creating {
        engine,
        instance: instance.clone(),
    });
    Ok(add_if_absent(engine, id, commit, &instance)?
        .then_some(guard)
        .flatten())
}

/// Adds the record of entity `id` (`instance`) to `commit`, expecting it absent, unless
/// it exists (then `commit` expects it present); returns whether it added it.
fn add_if_absent(
    engine: &Engine,
    id: &EntityId,
    commit: &mut Commit,
    instance: &str,
) -> Result<bool, Error> {
    if engine.holds(instance) || engine.store().instance(instance)?.is_some() {
        expect_present(commit, instance.to_string());
        return Ok(false);
    }
    commit
        .instances
        .push((instance.to_string(), new_record(id, engine.now_ms())));
    commit.expected.push((instance.to_string(), None));
    Ok(true)
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
