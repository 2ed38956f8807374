//! The failures the replay step and the orchestration context build: a path the code no
//! longer takes, a payload that no longer decodes, a panic, a wait on something that is
//! not durable.

use std::any::Any;

use durable_store::{Failure, FailureKind};

use crate::payload::PayloadError;

/// The code does not take the path its history recorded; `message` says where and how.
pub(crate) fn nondeterminism(message: String) -> Failure {
    Failure {
        kind: FailureKind::Nondeterminism,
        message,
    }
}

/// The code awaits something that is not a durable operation, and it woke the
/// orchestrator after step `step`.
pub(crate) fn woken_from_outside(orchestrator: &str, step: u64) -> Failure {
    nondeterminism(format!(
        "orchestrator `{orchestrator}` was woken by something other than the runtime after step {step}: \
         it awaits a future that is not a durable operation (an async runtime's timer, a channel, \
         a socket?), which a replay would not reproduce; await only `ctx` operations"
    ))
}

/// The code is pending after step `step` with every durable operation answered: it waits
/// on something that is not one.
pub(crate) fn waits_outside(orchestrator: &str, step: u64) -> Failure {
    nondeterminism(format!(
        "orchestrator `{orchestrator}` is waiting on something that is not a durable operation \
         (an async runtime's timer, a channel, a socket?): after step {step} every durable operation \
         has its result; await only `ctx` operations in an orchestrator"
    ))
}

/// The orchestrator panicked with `payload`.
pub(crate) fn panicked(orchestrator: &str, payload: &(dyn Any + Send)) -> Failure {
    Failure {
        kind: FailureKind::Panicked,
        message: format!(
            "orchestrator `{orchestrator}` panicked: {}",
            panic_message(payload)
        ),
    }
}

/// A payload does not decode (or encode) as the code's type.
pub(crate) fn decode_failure(e: PayloadError) -> Failure {
    Failure {
        kind: FailureKind::Decode {
            type_name: e.type_name.to_string(),
        },
        message: e.to_string(),
    }
}

/// The message of a panic payload, as `std` prints it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
