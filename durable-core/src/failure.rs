//! The failures the runtime records ([`Failure`]), built here, one constructor per cause,
//! so that a kind and its message are written once.

use std::any::Any;
use std::time::Duration;

use durable_store::{Failure, FailureKind};

use crate::error::Timeout;
use crate::payload::{PayloadError, PayloadTooLarge};
use crate::runtime::unregistered::Unregistered;

/// User code returned `Err`: `payload` is the encoded error, `message` its `Display`.
pub(crate) fn returned(payload: Vec<u8>, message: String) -> Failure {
    Failure {
        kind: FailureKind::Returned { payload },
        message,
    }
}

/// User code panicked with `message`.
pub(crate) fn panicked(message: String) -> Failure {
    Failure {
        kind: FailureKind::Panicked,
        message,
    }
}

/// A payload does not decode as its type.
pub(crate) fn undecodable(e: PayloadError) -> Failure {
    Failure {
        kind: FailureKind::Decode {
            type_name: e.type_name.to_string(),
        },
        message: e.to_string(),
    }
}

/// An instance's history cannot be read: stored `what` does not decode (`detail`).
pub(crate) fn undecodable_history(what: String, detail: &str) -> Failure {
    Failure {
        message: format!(
            "its history cannot be read: stored {what} does not decode ({detail}); \
             repair or restore the store, then restart to resume"
        ),
        kind: FailureKind::Decode { type_name: what },
    }
}

/// The input of activity `activity` does not decode: `failure` says why.
pub(crate) fn undecodable_activity_input(activity: &str, failure: Failure) -> Failure {
    Failure {
        message: format!(
            "the input of activity `{activity}` does not decode: {}; deploy code that reads it \
             (or roll back), then restart to resume",
            failure.message
        ),
        kind: failure.kind,
    }
}

/// An activity attempt ran past its timeout, `after`.
pub(crate) fn timed_out(after: Duration) -> Failure {
    Failure {
        kind: FailureKind::TimedOut,
        message: Timeout { after }.to_string(),
    }
}

/// A payload is over the runtime's limit: `too_large` says which, its size and the limit.
pub(crate) fn too_large(too_large: &PayloadTooLarge) -> Failure {
    Failure {
        kind: FailureKind::TooLarge {
            size: too_large.size as u64,
            limit: too_large.limit as u64,
        },
        message: too_large.to_string(),
    }
}

/// The runtime refused a request of the orchestrator (a sub-orchestration it cannot
/// start), saying why.
pub(crate) fn rejected(message: String) -> Failure {
    Failure {
        kind: FailureKind::Rejected,
        message,
    }
}

/// A sub-orchestration was terminated with `reason`.
pub(crate) fn terminated(reason: &str) -> Failure {
    Failure {
        kind: FailureKind::Terminated,
        message: format!("terminated: {reason}"),
    }
}

/// The failure of a call to activity `name`, which this runtime does not have, under
/// `policy`.
pub(crate) fn unregistered_activity(name: &str, policy: Unregistered) -> Failure {
    unregistered(format!("activity `{name}`"), name, policy, "activity")
}

/// The failure of an instance or call that needs version `version` of orchestrator
/// `name`, which this runtime does not have, under `policy`.
pub(crate) fn unregistered_orchestrator(name: &str, version: u32, policy: Unregistered) -> Failure {
    let what = match version {
        1 => format!("orchestrator `{name}`"),
        _ => format!("version {version} of orchestrator `{name}`"),
    };
    unregistered(what, name, policy, "orchestrator")
}

fn unregistered(what: String, name: &str, policy: Unregistered, method: &str) -> Failure {
    let resume = match policy {
        Unregistered::Wait => "register it and restart the runtime to resume".to_string(),
        Unregistered::Fail => format!("add it with `RuntimeBuilder::{method}`"),
    };
    Failure {
        message: format!("{what} is not registered with this runtime; {resume}"),
        kind: FailureKind::Unregistered {
            name: name.to_string(),
        },
    }
}

// ---- What the replay step and the orchestration context find ----

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
         it awaits a future that is not a durable operation (a tokio timer, a channel, \
         a socket?), which a replay would not reproduce; await only `ctx` operations"
    ))
}

/// The code is pending after step `step` with every durable operation answered: it waits
/// on something that is not one.
pub(crate) fn waits_outside(orchestrator: &str, step: u64) -> Failure {
    nondeterminism(format!(
        "orchestrator `{orchestrator}` is waiting on something that is not a durable operation \
         (a tokio timer, a channel, a socket?): after step {step} every durable operation \
         has its result; await only `ctx` operations in an orchestrator"
    ))
}

/// Orchestrator `orchestrator` panicked with `payload`.
pub(crate) fn orchestrator_panicked(orchestrator: &str, payload: &(dyn Any + Send)) -> Failure {
    Failure {
        kind: FailureKind::Panicked,
        message: format!(
            "orchestrator `{orchestrator}` panicked: {}",
            panic_message(payload)
        ),
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
