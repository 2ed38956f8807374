//! Why an entity operation did not take effect.

use std::fmt;

use durable_store::{Failure, FailureKind};

use crate::entity::id::EntityId;
use crate::payload::PayloadError;

/// Why [`Entity::dispatch`](crate::Entity::dispatch) ran no operation, or dropped the
/// effects of the one it ran. In every case the stored state is still the entity's state,
/// and no signal of the operation goes out.
///
/// Each variant names the entity and the operation; its message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntityError {
    /// The entity type has no operation of that name (renamed or removed in a deploy,
    /// while messages for it were queued).
    #[error(
        "entity `{entity}` has no operation `{operation}` (its operations: {}); was it renamed \
         or removed? Deploy code that has it under that name to run the message",
        known.join(", ")
    )]
    UnknownOperation {
        /// The entity.
        entity: EntityId,
        /// The name asked for.
        operation: String,
        /// The operations the type has.
        known: Vec<&'static str>,
    },
    /// The stored state does not decode as the entity's type: the type changed in a way
    /// JSON cannot bridge.
    #[error(
        "the stored state of entity `{entity}` does not decode, so operation `{operation}` did \
         not run and the state is kept as stored: {error}; deploy a state type that reads it \
         (e.g. `#[serde(default)]` on a new field, `#[serde(alias = ...)]` on a renamed one)"
    )]
    UndecodableState {
        /// The entity.
        entity: EntityId,
        /// The operation that was to run.
        operation: &'static str,
        /// What the JSON library reported, with the type's name.
        error: PayloadError,
    },
    /// The input does not decode as the operation's input type.
    #[error(
        "the input of operation `{operation}` of entity `{entity}` does not decode, so it did \
         not run: {error}; send the operation's input type, or deploy an input type that reads \
         this one"
    )]
    UndecodableInput {
        /// The entity.
        entity: EntityId,
        /// The operation.
        operation: &'static str,
        /// What the JSON library reported, with the type's name.
        error: PayloadError,
    },
    /// The operation returned `Err`: its state change and signals were dropped.
    #[error(
        "operation `{operation}` of entity `{entity}` failed, its state change and signals \
         dropped: {message}"
    )]
    Returned {
        /// The entity.
        entity: EntityId,
        /// The operation.
        operation: &'static str,
        /// The operation's error value, as JSON (decode it as the operation's `Er`); empty
        /// if it did not encode.
        payload: Vec<u8>,
        /// The error's `Display`.
        message: String,
    },
    /// The operation panicked: the panic was caught, its state change and signals dropped.
    #[error(
        "operation `{operation}` of entity `{entity}` panicked, its state change and signals \
         dropped: {message}"
    )]
    Panicked {
        /// The entity.
        entity: EntityId,
        /// The operation.
        operation: &'static str,
        /// The panic's message.
        message: String,
    },
    /// Making the initial state of an entity never operated on panicked (its
    /// `Default::default()` or `#[entity(init = ...)]` function).
    #[error(
        "the initial state of entity `{entity}` panicked, so operation `{operation}` did not \
         run: {message}; fix the type's `Default` or its `#[entity(init = ...)]` function"
    )]
    InitialStatePanicked {
        /// The entity.
        entity: EntityId,
        /// The operation that was to run.
        operation: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A value the operation produced does not encode as JSON: its effects were dropped.
    #[error(
        "operation `{operation}` of entity `{entity}` was dropped: {what} does not encode: {error}"
    )]
    Unencodable {
        /// The entity.
        entity: EntityId,
        /// The operation.
        operation: &'static str,
        /// Which value.
        what: Unencodable,
        /// What the JSON library reported, with the type's name.
        error: PayloadError,
    },
    /// A signal the operation sent could not be recorded: its effects were dropped.
    #[error("operation `{operation}` of entity `{entity}` was dropped: {refusal}")]
    BadSignal {
        /// The entity.
        entity: EntityId,
        /// The operation that sent the signal.
        operation: &'static str,
        /// What was wrong with the signal (boxed: it is rare, and large).
        refusal: Box<SignalRefusal>,
    },
}

/// Why a signal could not be recorded ([`EntityError::BadSignal`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalRefusal {
    /// The id names an entity of another type than the signalled operation's
    /// (`ctx.signal(counter_id, Account::deposit, ..)`).
    #[error(
        "it signalled `{target}` with operation `{operation}` of entity type `{expected}`; \
         signal a `{expected}` id, or its key alone"
    )]
    WrongEntity {
        /// The id the signal named.
        target: EntityId,
        /// The signalled operation.
        operation: &'static str,
        /// The entity type the signalled operation belongs to.
        expected: &'static str,
    },
    /// The target's id cannot name an instance of the store (a key with control
    /// characters, or an id over [`MAX_INSTANCE_ID_LEN`](crate::MAX_INSTANCE_ID_LEN)
    /// bytes): the client refuses the same id with `Error::InvalidInstanceId`.
    #[error("its signal `{operation}` names `{target:?}`, which cannot be stored: {reason}")]
    InvalidTarget {
        /// The signal's target.
        target: EntityId,
        /// The signalled operation.
        operation: &'static str,
        /// Why the id cannot be stored, and what to do.
        reason: String,
    },
    /// The signal's input does not encode as JSON.
    #[error("the input of its signal `{operation}` to `{target}` does not encode: {error}")]
    UnencodableInput {
        /// The signal's target.
        target: EntityId,
        /// The signalled operation.
        operation: &'static str,
        /// What the JSON library reported, with the type's name.
        error: PayloadError,
    },
}

/// Which value of an operation did not encode ([`EntityError::Unencodable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unencodable {
    /// The entity's new state.
    State,
    /// The operation's output.
    Output,
}

impl fmt::Display for Unencodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unencodable::State => f.write_str("the new state"),
            Unencodable::Output => f.write_str("the output"),
        }
    }
}

impl EntityError {
    /// The entity the operation was for.
    pub fn entity(&self) -> &EntityId {
        match self {
            EntityError::UnknownOperation { entity, .. }
            | EntityError::UndecodableState { entity, .. }
            | EntityError::UndecodableInput { entity, .. }
            | EntityError::Returned { entity, .. }
            | EntityError::Panicked { entity, .. }
            | EntityError::InitialStatePanicked { entity, .. }
            | EntityError::Unencodable { entity, .. }
            | EntityError::BadSignal { entity, .. } => entity,
        }
    }

    /// The operation's name.
    pub fn operation(&self) -> &str {
        match self {
            EntityError::UnknownOperation { operation, .. } => operation,
            EntityError::UndecodableState { operation, .. }
            | EntityError::UndecodableInput { operation, .. }
            | EntityError::Returned { operation, .. }
            | EntityError::Panicked { operation, .. }
            | EntityError::InitialStatePanicked { operation, .. }
            | EntityError::Unencodable { operation, .. }
            | EntityError::BadSignal { operation, .. } => operation,
        }
    }

    /// The failure a caller of the operation gets (`EntityFailed`): an `Err` the
    /// operation returned is [`FailureKind::Returned`] with the error's JSON, a panic
    /// [`FailureKind::Panicked`], an input (or a value) that does not decode or encode
    /// [`FailureKind::Decode`] with its type, an unknown operation
    /// [`FailureKind::Unregistered`] with its name, a signal it could not send
    /// [`FailureKind::Rejected`]; the message is the error's `Display`.
    pub(crate) fn failure(&self) -> Failure {
        let kind = match self {
            EntityError::Returned { payload, .. } => FailureKind::Returned {
                payload: payload.clone(),
            },
            EntityError::Panicked { .. } | EntityError::InitialStatePanicked { .. } => {
                FailureKind::Panicked
            }
            EntityError::UndecodableState { error, .. }
            | EntityError::UndecodableInput { error, .. }
            | EntityError::Unencodable { error, .. } => FailureKind::Decode {
                type_name: error.type_name.to_string(),
            },
            EntityError::UnknownOperation { operation, .. } => FailureKind::Unregistered {
                name: operation.clone(),
            },
            EntityError::BadSignal { .. } => FailureKind::Rejected,
        };
        Failure {
            kind,
            message: self.to_string(),
        }
    }
}
