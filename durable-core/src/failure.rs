//! The failures the runtime records ([`Failure`]), built here, one constructor per cause,
//! so that a kind and its message are written once.

use std::time::Duration;

use durable_store::{Failure, FailureKind};

use crate::error::Timeout;
use crate::payload::PayloadError;
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
