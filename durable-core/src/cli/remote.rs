//! `--url`: the admin API of a running process (the dashboard's `/api/`), over plain HTTP
//! with a small blocking client. Every answer is JSON, errors as `{"error": "..."}`.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::CliError;

/// How long one request may take, end to end: a purge of many instances is the longest.
const TIMEOUT: Duration = Duration::from_secs(600);

/// The admin API at one base URL (`http://127.0.0.1:8080/`).
#[derive(Debug)]
pub(crate) struct Remote {
    agent: ureq::Agent,
    /// The base URL, without its trailing `/`.
    base: String,
    token: Option<String>,
}

/// A request the API answered with an error status, or could not answer.
#[derive(Debug)]
pub(crate) enum RemoteError {
    /// The API answered `status` with this message.
    Status { status: u16, message: String },
    /// No answer, or not one the CLI reads.
    Failed(String),
}

impl Remote {
    /// The API at `url`; nothing is sent yet.
    ///
    /// # Errors
    ///
    /// [`CliError`] if `url` is not an `http://` URL (HTTPS is not compiled in: the
    /// admin API serves plain HTTP, on loopback unless it has a token).
    pub(crate) fn new(url: &str, token: Option<String>) -> Result<Self, CliError> {
        if !url.starts_with("http://") {
            return Err(CliError::usage(format!(
                "--url `{url}` is not an http:// URL: give the address the process serves its \
                 admin API on, e.g. http://127.0.0.1:8080/ (HTTPS is not supported; put a \
                 TLS proxy's plain side or an SSH tunnel in front)"
            )));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            base: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The base URL, as given (without a trailing `/`).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` read as JSON.
    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemoteError> {
        let bytes = self.get_bytes(path)?;
        self.decode(path, &bytes)
    }

    /// `GET path`, its body as bytes.
    pub(crate) fn get_bytes(&self, path: &str) -> Result<Vec<u8>, RemoteError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.answer(&url, request.call())
    }

    /// `POST path` with a JSON body, the answer read as JSON.
    pub(crate) fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, RemoteError> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body).map_err(|e| RemoteError::Failed(e.to_string()))?;
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let bytes = self.answer(&url, request.send(&body[..]))?;
        self.decode(path, &bytes)
    }

    fn answer(
        &self,
        url: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, RemoteError> {
        let mut response = response.map_err(|e| {
            RemoteError::Failed(format!(
                "cannot reach the admin API at {}/: {e} (is the process running and serving \
                 its dashboard there?)",
                self.base
            ))
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| RemoteError::Failed(format!("reading the answer of {url}: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => body.error,
            Err(_) => String::from_utf8_lossy(&bytes).trim().to_string(),
        };
        let message = match status {
            401 => format!(
                "the admin API at {}/ refused the request (401): {message}; give its token with \
                 --token",
                self.base
            ),
            _ if message.is_empty() => format!("{url} answered {status}"),
            _ => message,
        };
        Err(RemoteError::Status { status, message })
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, bytes: &[u8]) -> Result<T, RemoteError> {
        serde_json::from_slice(bytes).map_err(|e| {
            RemoteError::Failed(format!(
                "the answer of {}{path} is not what this CLI reads ({e}): is the process running \
                 the same version of durable?",
                self.base
            ))
        })
    }
}

/// `text` percent-encoded for a path segment or a query value: everything but the
/// unreserved characters of RFC 3986.
pub(crate) fn encode_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A query string (`?a=1&b=x`) of the pairs whose value is present; empty if none is.
pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| {
            value
                .as_ref()
                .map(|value| format!("{name}={}", encode_component(value)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::{encode_component, query};

    #[test]
    fn encodes_ids_and_query_values() {
        assert_eq!(encode_component("order-1_a.b~"), "order-1_a.b~");
        assert_eq!(encode_component("a/b c?&é"), "a%2Fb%20c%3F%26%C3%A9");
        assert_eq!(
            query(&[
                ("status", Some("failed".into())),
                ("after", None),
                ("page_size", Some("5".into()))
            ]),
            "?status=failed&page_size=5"
        );
        assert_eq!(query(&[("after", None)]), "");
    }
}
