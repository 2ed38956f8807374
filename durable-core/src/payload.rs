//! Encoding of user payloads (inputs, outputs, errors, progress) with postcard.
//!
//! postcard is not self-describing, so a decode also insists that every byte is consumed:
//! a payload written for a different type fails with the type's name instead of turning
//! into a wrong value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A payload that does not encode or decode as the type the code expects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload of type `{type_name}` does not {direction}: {detail}")]
pub struct PayloadError {
    /// The Rust type.
    pub type_name: &'static str,
    direction: &'static str,
    detail: String,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PayloadError> {
    postcard::to_allocvec(value).map_err(|e| PayloadError {
        type_name: std::any::type_name::<T>(),
        direction: "encode",
        detail: e.to_string(),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    let error = |detail: String| PayloadError {
        type_name: std::any::type_name::<T>(),
        direction: "decode (was its type changed?)",
        detail,
    };
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(error(format!("{} bytes left over", rest.len()))),
        Err(e) => Err(error(e.to_string())),
    }
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
    fn round_trips() {
        let old = Old {
            id: 7,
            name: "x".into(),
        };
        assert_eq!(decode::<Old>(&encode(&old).unwrap()).unwrap(), old);
    }

    #[test]
    fn changed_type_is_an_error_naming_the_type() {
        let bytes = encode(&Old {
            id: 7,
            name: "x".into(),
        })
        .unwrap();
        let err = decode::<New>(&bytes).unwrap_err();
        assert!(err.type_name.ends_with("New"), "{err}");
        assert!(err.to_string().contains("New"), "{err}");
    }
}
