//! The frame of every page: head, navigation, the flash message of the last action, and
//! the stylesheet.

use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::dashboard::security;

/// The stylesheet, served at `/assets/dashboard.css`.
const STYLESHEET: &str = include_str!("../assets/dashboard.css");

/// `GET /assets/dashboard.css`.
pub(crate) async fn stylesheet() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET).into_response()
}

/// A whole page: `body` in the frame, the flash message the request carries (cleared
/// once shown), and `refresh` (seconds) for a page that reloads itself.
pub(crate) fn page(
    headers: &HeaderMap,
    title: &str,
    refresh: Option<u64>,
    body: Markup,
) -> Response {
    let flash = security::flash(headers);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = refresh {
                    meta http-equiv="refresh" content=(secs);
                }
                title { (title) " · durable" }
                link rel="stylesheet" href="/assets/dashboard.css";
            }
            body {
                header {
                    a.brand href="/" { "durable" }
                    nav {
                        a href="/" { "Instances" }
                        a href="/entities" { "Entities" }
                        a href="/schedules" { "Schedules" }
                    }
                }
                main {
                    @if let Some(message) = &flash {
                        @let failed = message.starts_with("Failed") || message.starts_with("Not ");
                        p.flash.failed[failed] id="flash" { (message) }
                    }
                    (body)
                }
            }
        }
    };
    let mut response = Html(markup.into_string()).into_response();
    if flash.is_some()
        && let Ok(clear) = HeaderValue::from_str(&security::clear_flash_cookie())
    {
        response.headers_mut().append(SET_COOKIE, clear);
    }
    response
}

/// A page saying what went wrong, with `status`.
pub(crate) fn error_page(headers: &HeaderMap, status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (status.canonical_reason().unwrap_or("Error")) }
        p.error { (message) }
        p { a href="/" { "Back to the instances" } }
    };
    let mut response = page(headers, "Error", None, body);
    *response.status_mut() = status;
    response
}

/// A status name as a coloured badge.
pub(crate) fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } { (status) } }
}

/// A JSON value, pretty-printed and escaped, in a `<pre>`.
pub(crate) fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! { pre.json { (text) } }
}

/// A path with its query string, percent-encoding each value.
pub(crate) fn link(path: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `value` percent-encoded for a URL's path segment or query value.
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The page of instance `id`.
pub(crate) fn instance_path(id: &str) -> String {
    instance_link(id, "", &[])
}

/// `under` (empty, or `/actions/{action}`) of the page of instance `id`, with the query
/// `params` (see [`object_link`]).
pub(crate) fn instance_link(id: &str, under: &str, params: &[(&str, &str)]) -> String {
    object_link("instance", id, under, params)
}

/// The 400 page of `route` (`/instance`, `/schedule/actions/ACTION`), the `what` (`page`,
/// `action`) of a `kind` (`instance`, `schedule`) by its id in the query (see
/// [`object_link`]), asked without one.
pub(crate) fn missing_id(headers: &HeaderMap, what: &str, kind: &str, route: &str) -> Response {
    error_page(
        headers,
        StatusCode::BAD_REQUEST,
        &format!("this {what} needs the {kind}'s id: {route}?id=..."),
    )
}

/// `under` (empty, or `/actions/{action}`) of the page of the `kind` (`instance`,
/// `schedule`) with id `id`, with the query `params`: under `/{kind}s/{id}`, or under
/// `/{kind}?id=...` for an id a browser would take for a `.` or `..` path segment and
/// drop (percent-encoded too, as `%2E`).
pub(crate) fn object_link(kind: &str, id: &str, under: &str, params: &[(&str, &str)]) -> String {
    if id == "." || id == ".." {
        let mut query = vec![("id", id)];
        query.extend_from_slice(params);
        link(&format!("/{kind}{under}"), &query)
    } else {
        link(&format!("/{kind}s/{}{under}", encode(id)), params)
    }
}
