//! Payloads and records as the views show them: JSON values, never bytes, and never an
//! error for a payload that is not JSON.

use durable_store::{Failure, FailureKind, Site};

use super::view::{FailureView, SiteView};
use crate::payload;

/// How many bytes of a payload that is not JSON its description quotes.
const QUOTED_BYTES: usize = 64;

/// `bytes`, a stored payload, as a JSON value; one that is not JSON (a payload written
/// by older code, or not by serde_json) as a JSON string saying so and quoting its start.
pub(crate) fn value(bytes: &[u8]) -> serde_json::Value {
    payload::to_json(bytes).unwrap_or_else(|_| {
        let quoted = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTED_BYTES)]);
        let more = if bytes.len() > QUOTED_BYTES {
            "..."
        } else {
            ""
        };
        serde_json::Value::String(format!("<not JSON, {} bytes: {quoted}{more}>", bytes.len()))
    })
}

/// `bytes` as a JSON value, `None` if empty (no payload).
pub(crate) fn optional(bytes: &[u8]) -> Option<serde_json::Value> {
    (!bytes.is_empty()).then(|| value(bytes))
}

/// The snake-case name of a failure's kind: `error`, `panic`, `decode`,
/// `nondeterminism`, `timeout`, `terminated`, `rejected`, `unregistered`, `too_large`.
pub(crate) fn failure_kind(kind: &FailureKind) -> &'static str {
    match kind {
        FailureKind::Returned { .. } => "error",
        FailureKind::Panicked => "panic",
        FailureKind::Decode { .. } => "decode",
        FailureKind::Nondeterminism => "nondeterminism",
        FailureKind::TimedOut => "timeout",
        FailureKind::Terminated => "terminated",
        FailureKind::Rejected => "rejected",
        FailureKind::Unregistered { .. } => "unregistered",
        FailureKind::TooLarge { .. } => "too_large",
    }
}

/// A failure as a view.
pub(crate) fn failure_view(failure: &Failure) -> FailureView {
    FailureView {
        kind: failure_kind(&failure.kind).to_string(),
        message: failure.message.clone(),
    }
}

/// A failure as a JSON value: `{"kind", "message"}`, and the error's value (`error`) for
/// an error the code returned.
pub(crate) fn failure(failure: &Failure) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), failure_kind(&failure.kind).into());
    object.insert("message".into(), failure.message.clone().into());
    match &failure.kind {
        FailureKind::Returned { payload } if !payload.is_empty() => {
            object.insert("error".into(), value(payload));
        }
        FailureKind::Decode { type_name } => {
            object.insert("type".into(), type_name.clone().into());
        }
        FailureKind::Unregistered { name } => {
            object.insert("name".into(), name.clone().into());
        }
        FailureKind::TooLarge { size, limit } => {
            object.insert("size".into(), (*size).into());
            object.insert("limit".into(), (*limit).into());
        }
        _ => {}
    }
    serde_json::Value::Object(object)
}

/// An await site as a view.
pub(crate) fn site(site: &Site) -> SiteView {
    SiteView {
        file: site.file.clone(),
        line: site.line,
        function: site.function.clone(),
    }
}
