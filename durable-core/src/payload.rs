//! Encoding of user payloads (inputs, outputs, events, recorded values, errors, custom
//! status, progress) as JSON.
//!
//! JSON is self-describing: a struct is stored with its field names and an enum with its
//! variant names, so a type edited between deploys decodes by name (fields or variants
//! reordered, a field added with `#[serde(default)]`, a field removed) or fails with an
//! error naming the type; it never turns into another value. The store's own records stay
//! postcard. [`to_json`] shows any payload without its Rust type.

use durable_store::{Failure, FailureKind};
use serde::Serialize;

use crate::failure;
use serde::de::DeserializeOwned;

/// A payload that does not encode or decode as the type the code expects.
///
/// Its message holds the JSON library's, and is what a failure built from it stores
/// (history and status), so the error carries no separate cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload of type `{type_name}` does not {direction}{}: {detail}", direction.hint())]
#[non_exhaustive]
pub struct PayloadError {
    /// The Rust type.
    pub type_name: &'static str,
    /// Whether encoding or decoding failed.
    pub direction: PayloadDirection,
    detail: String,
}

impl PayloadError {
    /// What the JSON library reported: the field or value that does not fit the type.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Which way a payload failed to convert ([`PayloadError::direction`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadDirection {
    /// A value did not serialize to JSON.
    Encode,
    /// Stored or raised JSON did not deserialize as the type (often: the type changed
    /// between deploys).
    Decode,
}

impl PayloadDirection {
    /// What the message adds after the direction.
    fn hint(self) -> &'static str {
        match self {
            PayloadDirection::Encode => "",
            PayloadDirection::Decode => " (was its type changed?)",
        }
    }
}

impl std::fmt::Display for PayloadDirection {
    /// `encode` or `decode`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadDirection::Encode => "encode",
            PayloadDirection::Decode => "decode",
        })
    }
}

/// A payload larger than the runtime's limit, set with
/// [`RuntimeBuilder::max_payload_bytes`](crate::RuntimeBuilder::max_payload_bytes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is {size} bytes, over the payload limit of {limit} bytes; pass large data by reference \
     (a key or a path) or raise the limit with `RuntimeBuilder::max_payload_bytes`"
)]
pub struct PayloadTooLarge {
    /// Which payload: "the input of activity `charge`", ...
    pub what: String,
    /// Its encoded size in bytes.
    pub size: usize,
    /// The limit in bytes.
    pub limit: usize,
}

impl PayloadTooLarge {
    /// The failure stored for it in history and in the instance's status.
    pub(crate) fn failure(&self) -> Failure {
        failure::too_large(self)
    }
}

/// Checks that `bytes`, the payload `what` names, fits in `limit`.
pub(crate) fn check_size(
    what: impl FnOnce() -> String,
    bytes: &[u8],
    limit: usize,
) -> Result<(), PayloadTooLarge> {
    if bytes.len() <= limit {
        return Ok(());
    }
    Err(PayloadTooLarge {
        what: what(),
        size: bytes.len(),
        limit,
    })
}

/// `failure`, made to fit `limit`: an error whose message and value are over it together
/// keeps its kind (so it is retried, and a panic stays a panic), loses its value (the typed
/// error is then unavailable) and has its message cut, saying so. An error's size says
/// nothing of whether the next attempt fails.
pub(crate) fn fit_failure(mut failure: Failure, limit: usize) -> Failure {
    let value = match &failure.kind {
        FailureKind::Returned { payload } => payload.len(),
        _ => 0,
    };
    let size = failure.message.len() + value;
    if size <= limit {
        return failure;
    }
    if let FailureKind::Returned { payload } = &mut failure.kind {
        payload.clear();
    }
    let note =
        format!(" [cut: the error was {size} bytes, over the payload limit of {limit} bytes]");
    // Under a limit too small for the note, the message is only cut.
    let noted = note.len() < limit;
    let room = if noted { limit - note.len() } else { limit };
    if failure.message.len() > room {
        let mut keep = room;
        while !failure.message.is_char_boundary(keep) {
            keep -= 1;
        }
        failure.message.truncate(keep);
    }
    if noted {
        failure.message.push_str(&note);
    }
    failure
}

/// `value` as JSON.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PayloadError> {
    serde_json::to_vec(value).map_err(|e| PayloadError {
        type_name: std::any::type_name::<T>(),
        direction: PayloadDirection::Encode,
        detail: e.to_string(),
    })
}

/// `bytes`, JSON, as a `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(bytes).map_err(|e| PayloadError {
        type_name: std::any::type_name::<T>(),
        direction: PayloadDirection::Decode,
        detail: e.to_string(),
    })
}

/// A stored payload (an input, output, event, recorded value, error value or custom
/// status, as found in [`record`](crate::record) types) as a JSON value, for tools that
/// read a store without the Rust types.
///
/// # Errors
///
/// [`PayloadError`] if `bytes` is not JSON: a store written by an older durable (whose
/// payloads were postcard) is refused when it is opened, so this means a damaged record
/// or bytes that are not a payload. An empty error value (one cut to fit the payload
/// limit) is not JSON either.
///
/// # Examples
///
/// ```
/// let bytes = br#"{"net":100,"tax":7}"#;
/// let value = durable_core::payload_to_json(bytes)?;
/// assert_eq!(value["tax"], 7);
/// # Ok::<(), durable_core::PayloadError>(())
/// ```
pub fn to_json(bytes: &[u8]) -> Result<serde_json::Value, PayloadError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Old {
        id: u32,
        name: String,
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct New {
        id: u32,
    }

    #[test]
    fn an_error_over_the_limit_keeps_its_kind_and_is_cut_to_fit() {
        let failure = Failure {
            kind: FailureKind::Returned {
                payload: vec![1; 500],
            },
            message: "é".repeat(400),
        };
        let fitted = fit_failure(failure, 300);
        assert_eq!(fitted.kind, FailureKind::Returned { payload: vec![] });
        assert!(fitted.message.len() <= 300, "{}", fitted.message.len());
        assert!(fitted.message.starts_with("éé"), "{}", fitted.message);
        assert!(
            fitted
                .message
                .ends_with("[cut: the error was 1300 bytes, over the payload limit of 300 bytes]"),
            "{}",
            fitted.message
        );
        let panic = Failure {
            kind: FailureKind::Panicked,
            message: "p".repeat(50),
        };
        let fitted = fit_failure(panic, 10);
        assert_eq!(
            (fitted.kind, fitted.message),
            (FailureKind::Panicked, "p".repeat(10))
        );
        let value_only = Failure {
            kind: FailureKind::Returned {
                payload: vec![1; 500],
            },
            message: "short".into(),
        };
        let fitted = fit_failure(value_only, 300);
        assert_eq!(
            fitted.message,
            "short [cut: the error was 505 bytes, over the payload limit of 300 bytes]"
        );
        let small = Failure {
            kind: FailureKind::Panicked,
            message: "ok".into(),
        };
        assert_eq!(fit_failure(small.clone(), 10), small);
    }

    #[test]
    fn round_trips() {
        let old = Old {
            id: 7,
            name: "x".into(),
        };
        assert_eq!(decode::<Old>(&encode(&old).unwrap()).unwrap(), old);
    }

    /// The type changes a deploy may make decode by name, never into another value.
    #[test]
    fn edits_between_deploys_decode_by_name() {
        #[derive(serde::Serialize)]
        enum DecisionV1 {
            Approve,
            #[allow(dead_code)]
            Reject,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        enum DecisionV2 {
            Reject,
            Approve,
        }
        let bytes = encode(&DecisionV1::Approve).unwrap();
        assert_eq!(decode::<DecisionV2>(&bytes).unwrap(), DecisionV2::Approve);
        #[derive(serde::Serialize)]
        struct TotalV1 {
            net: u32,
            tax: u32,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct TotalV2 {
            tax: u32,
            net: u32,
            #[serde(default)]
            note: String,
        }
        let bytes = encode(&TotalV1 { net: 100, tax: 7 }).unwrap();
        let total = decode::<TotalV2>(&bytes).unwrap();
        assert_eq!((total.net, total.tax, total.note.as_str()), (100, 7, ""));
        assert_eq!(decode::<i32>(&encode(&2u32).unwrap()).unwrap(), 2);
        let err = decode::<bool>(&encode("yes").unwrap()).unwrap_err();
        assert_eq!(
            (err.type_name, err.direction),
            ("bool", PayloadDirection::Decode)
        );
        assert!(
            err.to_string()
                .starts_with("payload of type `bool` does not decode (was its type changed?): "),
            "{err}"
        );
    }

    #[test]
    fn a_value_that_does_not_encode_says_so() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1u8, 2u8), 3u8);
        let err = encode(&map).unwrap_err();
        assert_eq!(err.direction, PayloadDirection::Encode);
        assert!(
            err.to_string().contains("does not encode: "),
            "{err}: no hint about a changed type"
        );
        assert!(!err.detail().is_empty());
    }

    #[test]
    fn a_payload_reads_as_json_without_its_type() {
        let bytes = encode(&Old {
            id: 7,
            name: "x".into(),
        })
        .unwrap();
        assert_eq!(
            to_json(&bytes).unwrap(),
            serde_json::json!({ "id": 7, "name": "x" })
        );
        assert!(to_json(&[0x80, 1]).is_err());
    }

    #[test]
    fn changed_type_is_an_error_naming_the_type() {
        let bytes = encode(&Old {
            id: 7,
            name: "x".into(),
        })
        .unwrap();
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Renamed {
            id: String,
        }
        // A removed field is ignored.
        assert_eq!(decode::<New>(&bytes).unwrap(), New { id: 7 });
        let err = decode::<Renamed>(&bytes).unwrap_err();
        assert!(err.type_name.ends_with("Renamed"), "{err}");
        assert!(err.to_string().contains("Renamed"), "{err}");
    }
}
