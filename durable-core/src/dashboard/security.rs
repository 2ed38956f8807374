//! The dashboard's defences, applied to every route by [`authorize`]:
//!
//! - the bearer token, when one is set: `Authorization: Bearer TOKEN`, or, for a browser,
//!   `?token=TOKEN` once, which sets an `HttpOnly; SameSite=Strict` cookie and redirects
//!   to the same page without it (the cookie is named with the port the browser
//!   addressed, `durable_token_8080`: a browser sends a host's cookies to all its ports,
//!   and two dashboards on one host must not overwrite each other's);
//! - without a token, the `Host` header must name this machine (`localhost`, a loopback
//!   or other IP literal): a page of another site cannot reach a loopback dashboard by
//!   pointing a name of its own at 127.0.0.1 (DNS rebinding);
//! - form POSTs (the pages' actions) carry [`Csrf::token`], checked by the action
//!   handler; JSON POSTs (`/api/`) must say `Content-Type: application/json`, which a form
//!   of another site cannot send without a preflight the dashboard never answers;
//! - no other site may frame a page (`X-Frame-Options: DENY`, CSP `frame-ancestors
//!   'none'`), so none can trick a click on an action.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::dashboard::Shared;
use crate::dashboard::api::ApiError;

/// The cookie a browser keeps the bearer token in (see [`token_cookie`]).
const TOKEN_COOKIE: &str = "durable_token";
/// The cookie holding the message shown once after an action.
pub(crate) const FLASH_COOKIE: &str = "durable_flash";

/// The per-process secret that form POSTs echo back: 32 random bytes as hex, made once.
#[derive(Clone)]
pub(crate) struct Csrf {
    token: String,
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf(..)")
    }
}

impl Csrf {
    /// The process's secret (the same for every router of the process).
    pub(crate) fn process() -> Self {
        static SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let token = SECRET.get_or_init(|| {
            // Two v4 UUIDs: 244 bits from the operating system's random source.
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        });
        Self {
            token: token.clone(),
        }
    }

    /// The token a form carries in its `csrf` field.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Whether `given` is the token (compared in constant time).
    pub(crate) fn check(&self, given: Option<&str>) -> bool {
        given.is_some_and(|given| constant_time_eq(given.as_bytes(), self.token.as_bytes()))
    }
}

/// Whether `a` and `b` are the same secret, in time independent of where they differ; an
/// empty secret matches nothing (an empty token must not admit an empty credential).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware of every route: the token (or, without one, the `Host`), and the
/// content type of JSON POSTs.
pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let headers = request.headers();
    match &shared.options.token {
        Some(token) => {
            let bearer = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // The cookie holds the token hex-encoded (see `token_from_query`).
            let cookie = cookie(headers, &token_cookie(headers)).and_then(|hex| unhex(&hex));
            let ok = |v: Option<&[u8]>| v.is_some_and(|v| constant_time_eq(v, token.as_bytes()));
            if !(ok(bearer.map(str::as_bytes)) || ok(cookie.as_deref())) {
                if !api && let Some(response) = token_from_query(&request, token) {
                    return response;
                }
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: send `Authorization: Bearer TOKEN`, or open a page once with `?token=TOKEN`",
                )
                .into_response();
            }
        }
        None => {
            let host = headers.get(HOST).and_then(|v| v.to_str().ok());
            if !host.is_none_or(is_local_host) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this dashboard has no token, so it answers only requests addressed to this machine (localhost or an IP address); set a token to serve it under a host name",
                )
                .into_response();
            }
        }
    }
    if api && request.method() == Method::POST && !is_json(request.headers()) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST requests of the API must carry a JSON body with `Content-Type: application/json`",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    // No page of another site may frame these pages (clickjacking of their actions).
    let headers = response.headers_mut();
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    response
}

/// For `?token=TOKEN` on a page: a redirect to the page without it that sets the cookie;
/// `None` when the query has no token or the wrong one.
fn token_from_query(request: &Request, token: &str) -> Option<Response> {
    let query = request.uri().query()?;
    let mut given = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("token=") {
            Some(value) => given = Some(value),
            None if !pair.is_empty() => rest.push(pair),
            None => {}
        }
    }
    // As typed (a `+` is the token's own) or percent-encoded.
    let matches = |g: &str| {
        constant_time_eq(g.as_bytes(), token.as_bytes())
            | constant_time_eq(&percent_decode(g), token.as_bytes())
    };
    if !given.is_some_and(matches) {
        return None;
    }
    let mut location = request.uri().path().to_owned();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&rest.join("&"));
    }
    // Hex, so a token holding `;`, `,`, a space or a quote survives the cookie.
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        token_cookie(request.headers()),
        hex(token)
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_str(&location).ok()?);
    response
        .headers_mut()
        .insert(SET_COOKIE, HeaderValue::from_str(&cookie).ok()?);
    Some(response)
}

/// The name of the token's cookie for a request: [`TOKEN_COOKIE`] and the port of its
/// `Host` (`durable_token_8080`), as a browser sends every port of a host the host's
/// cookies; without a port (80, 443, or none said), [`TOKEN_COOKIE`] alone.
fn token_cookie(headers: &HeaderMap) -> String {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match host.and_then(host_port) {
        Some(port) => format!("{TOKEN_COOKIE}_{port}"),
        None => TOKEN_COOKIE.to_owned(),
    }
}

/// The port a `Host` header names (`localhost:8080`, `[::1]:8080`), if it names one.
fn host_port(host: &str) -> Option<&str> {
    let port = match host.strip_prefix('[') {
        Some(v6) => v6.split_once("]:")?.1,
        None => host.rsplit_once(':')?.1,
    };
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port)
}

/// Whether a `Host` header names this machine: `localhost` or an IP literal, with or
/// without a port.
fn is_local_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Whether the request says its body is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// `text` as lower-case hex, two digits a byte: any text fits a cookie so.
fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The bytes [`hex`] wrote; `None` if `hex` is not that.
fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A query value's `%XX` escapes decoded (a `+` stays a `+`; an escape that is not one
/// stays as written).
fn percent_decode(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| value.get(i + 1..i + 3))
            .flatten()
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded
}

/// A `Set-Cookie` value that shows `message` on the next page, once (hex-encoded, so
/// any text fits a cookie).
pub(crate) fn flash_cookie(message: &str) -> String {
    format!(
        "{FLASH_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        hex(message)
    )
}

/// The `Set-Cookie` value that clears the flash message once shown.
pub(crate) fn clear_flash_cookie() -> String {
    format!("{FLASH_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The flash message the request carries, decoded.
pub(crate) fn flash(headers: &HeaderMap) -> Option<String> {
    let hex = cookie(headers, FLASH_COOKIE)?;
    if hex.is_empty() {
        return None;
    }
    String::from_utf8(unhex(&hex)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_are_loopback_names_and_ip_literals() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:3000",
            "[::1]:80",
            "10.0.0.2",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
            assert!(!is_local_host(host), "{host}");
        }
    }

    #[test]
    fn the_token_cookie_is_named_with_the_port_addressed() {
        let named = |host: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(host) = host {
                headers.insert(HOST, HeaderValue::from_str(host).unwrap());
            }
            token_cookie(&headers)
        };
        assert_eq!(named(Some("localhost:8080")), "durable_token_8080");
        assert_eq!(named(Some("127.0.0.1:9090")), "durable_token_9090");
        assert_eq!(named(Some("[::1]:8080")), "durable_token_8080");
        for host in [Some("localhost"), Some("[::1]"), Some("example.com:"), None] {
            assert_eq!(named(host), "durable_token", "{host:?}");
        }
    }

    #[test]
    fn flash_messages_survive_the_cookie() {
        let cookie = flash_cookie("raised <event> \"ok\"; done");
        let value = cookie.split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&value).unwrap());
        assert_eq!(
            flash(&headers).as_deref(),
            Some("raised <event> \"ok\"; done")
        );
    }

    #[test]
    fn the_csrf_token_checks_only_itself() {
        let csrf = Csrf::process();
        assert!(csrf.check(Some(csrf.token())));
        assert!(!csrf.check(Some("0")));
        assert!(!csrf.check(None));
        assert_eq!(csrf.token(), Csrf::process().token());
    }
}
