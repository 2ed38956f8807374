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
//! create it once (the other's commit is refused and goes again as a plain message).
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
//! Entities are instances, so the client's unfiltered `list` shows them, with
//! orchestrator `@Account`; a listing by orchestrator ([`InstanceQuery::orchestrator`])
//! never matches one. The entity client calls (`signal_entity`, `entity_state`,
//! `delete_entity`) are the way to them; `wait` on an entity id never completes (an
//! entity never finishes), which a later step refuses with a typed error.
//!
//! [`EntityId`]: crate::entity::EntityId
//! [`Entity`]: crate::entity::Entity
//! [`Entity::initial`]: crate::entity::Entity::initial
//! [`Entity::dispatch`]: crate::entity::Entity::dispatch
//! [`InstanceRecord`]: durable_store::InstanceRecord
//! [`Event::EntityOperation`]: durable_store::Event::EntityOperation
//! [`InstanceQuery::orchestrator`]: crate::InstanceQuery::orchestrator

use durable_store::{Incarnation, InstanceRecord};

use crate::entity::EntityId;

/// What the `orchestrator` of an entity's record starts with: `@Account`.
pub(crate) const ENTITY_MARKER: char = '@';

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
