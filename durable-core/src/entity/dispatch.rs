//! The pure step of an entity: one operation on one stored state.
//!
//! Everything an operation does goes through values this step owns (the decoded state,
//! a fresh [`EntityContext`]) and comes out only on success, so a failure, a panic
//! included, leaves nothing behind: rollback is dropping those values. The runtime
//! commits what [`Dispatched`] holds, atomically with the message it consumed.

use std::panic::{self, AssertUnwindSafe};

use crate::entity::context::{EntityContext, Signal};
use crate::entity::error::{EntityError, SignalRefusal, Unencodable};
use crate::entity::id::EntityId;
use crate::entity::operation::OperationKind;
use crate::entity::{Applied, Entity};
use crate::failure;
use crate::payload;

/// What one operation did: to commit together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dispatched {
    /// The new state, as JSON; `None` when the state is unchanged: always for a read
    /// (`&self`), so the stored bytes stay as they were.
    pub state: Option<Vec<u8>>,
    /// The operation's output, as JSON (`null` for `()`).
    pub output: Vec<u8>,
    /// The signals it sent, in order, to commit with the state.
    pub signals: Vec<Signal>,
    /// Whether it was a read.
    pub kind: OperationKind,
}

/// [`Entity::dispatch`]: see its docs for the guarantees.
pub(crate) fn run<E: Entity>(
    id: &EntityId,
    stored: Option<&[u8]>,
    operation: &str,
    input: &[u8],
) -> Result<Dispatched, EntityError> {
    debug_assert!(id.is_of::<E>(), "{id} is not an id of a `{}`", E::NAME);
    let Some(info) = E::OPERATIONS.iter().find(|info| info.name == operation) else {
        return Err(unknown::<E>(id, operation));
    };
    let mut state = match stored {
        Some(bytes) => {
            payload::decode::<E>(bytes).map_err(|error| EntityError::UndecodableState {
                entity: id.clone(),
                operation: info.name,
                error,
            })?
        }
        None => {
            panic::catch_unwind(E::initial).map_err(|panic| EntityError::InitialStatePanicked {
                entity: id.clone(),
                operation: info.name,
                message: failure::panic_message(&*panic),
            })?
        }
    };
    let mut ctx = EntityContext::new(id.clone());
    // Unwind safety: on a panic, `state` and `ctx` are dropped unread, and the stored
    // bytes were never touched, so no broken invariant is observed.
    let applied = panic::catch_unwind(AssertUnwindSafe(|| state.apply(operation, input, &mut ctx)));
    let output = match applied {
        Err(panic) => {
            let message = failure::panic_message(&*panic);
            return Err(fail_with(id, info.name, |entity, operation| {
                EntityError::Panicked {
                    entity,
                    operation,
                    message,
                }
            }));
        }
        // `OPERATIONS` lists an operation that `apply` does not know: a hand-written
        // `Entity`, which the trait's docs rule out.
        Ok(None) => return Err(unknown::<E>(id, operation)),
        Ok(Some(Ok(output))) => output,
        Ok(Some(Err(applied))) => return Err(applied_error(id, info.name, applied)),
    };
    let signals = ctx
        .finish()
        .map_err(|refused| refused_error(id, info.name, refused))?;
    let state = match info.kind {
        OperationKind::Read => None,
        OperationKind::Write => {
            Some(
                payload::encode(&state).map_err(|error| EntityError::Unencodable {
                    entity: id.clone(),
                    operation: info.name,
                    what: Unencodable::State,
                    error,
                })?,
            )
        }
    };
    Ok(Dispatched {
        state,
        output,
        signals,
        kind: info.kind,
    })
}

fn unknown<E: Entity>(id: &EntityId, operation: &str) -> EntityError {
    EntityError::UnknownOperation {
        entity: id.clone(),
        operation: operation.to_string(),
        known: E::OPERATIONS.iter().map(|info| info.name).collect(),
    }
}

fn fail_with(
    id: &EntityId,
    operation: &'static str,
    error: impl FnOnce(EntityId, &'static str) -> EntityError,
) -> EntityError {
    error(id.clone(), operation)
}

fn applied_error(id: &EntityId, operation: &'static str, applied: Applied) -> EntityError {
    fail_with(id, operation, |entity, operation| match applied {
        Applied::UndecodableInput(error) => EntityError::UndecodableInput {
            entity,
            operation,
            error,
        },
        Applied::Returned { payload, message } => EntityError::Returned {
            entity,
            operation,
            payload,
            message,
        },
        Applied::UnencodableOutput(error) => EntityError::Unencodable {
            entity,
            operation,
            what: Unencodable::Output,
            error,
        },
    })
}

fn refused_error(id: &EntityId, operation: &'static str, refusal: SignalRefusal) -> EntityError {
    fail_with(id, operation, |entity, operation| EntityError::BadSignal {
        entity,
        operation,
        refusal: Box::new(refusal),
    })
}
