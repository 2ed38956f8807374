//! The instance page's actions: raise event, suspend, resume, restart, terminate and
//! purge, each a form POST to `/instances/{id}/actions/{action}` carrying the CSRF token;
//! terminate and purge need their "confirm" box ticked. After an action the browser is
//! sent back (303) with a flash message saying what happened.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use crate::dashboard::pages::layout::{self, instance_link, instance_path};
use crate::dashboard::{Shared, security};

/// The action forms of instance `id`.
pub(crate) fn forms(id: &str, csrf: &str) -> Markup {
    let action = |name: &str| instance_link(id, &format!("/actions/{name}"), &[]);
    html! {
        div.actions {
            form.action #raise-form method="post" action=(action("raise")) {
                input type="hidden" name="csrf" value=(csrf);
                label { "Event name" input #event-name type="text" name="name" required; }
                label { "Payload (JSON)" textarea #event-payload name="payload" rows="2" cols="28" { "null" } }
                button #raise type="submit" { "Raise event" }
            }
            form.action method="post" action=(action("suspend")) {
                input type="hidden" name="csrf" value=(csrf);
                label { "Reason" input type="text" name="reason"; }
                button #suspend type="submit" { "Suspend" }
            }
            form.action method="post" action=(action("resume")) {
                input type="hidden" name="csrf" value=(csrf);
                button #resume type="submit" { "Resume" }
            }
            form.action method="post" action=(action("restart")) {
                input type="hidden" name="csrf" value=(csrf);
                button #restart type="submit" { "Restart" }
            }
            form.action method="post" action=(action("terminate")) {
                input type="hidden" name="csrf" value=(csrf);
                label { "Reason" input type="text" name="reason"; }
                label.check { input type="checkbox" name="confirm" value="yes" required; "confirm" }
                button #terminate type="submit" { "Terminate" }
            }
            form.action method="post" action=(action("purge")) {
                input type="hidden" name="csrf" value=(csrf);
                label.check { input type="checkbox" name="confirm" value="yes" required; "confirm: delete its history" }
                button #purge type="submit" { "Purge" }
            }
        }
    }
}

/// `POST /instances/{id}/actions/{action}` (a form).
pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    act(&shared, &headers, id, &action, &form).await
}

/// `POST /instance/actions/{action}?id=...` (a form): the same, for any id (the forms of
/// `.` and `..`, which a browser drops from a path).
pub(crate) async fn submit_by_query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    match query.get("id") {
        Some(id) => act(&shared, &headers, id.clone(), &action, &form).await,
        None => layout::missing_id(&headers, "action", "instance", "/instance/actions/ACTION"),
    }
}

async fn act(
    shared: &Shared,
    headers: &HeaderMap,
    id: String,
    action: &str,
    form: &HashMap<String, String>,
) -> Response {
    if !shared.csrf.check(form.get("csrf").map(String::as_str)) {
        return layout::error_page(
            headers,
            StatusCode::FORBIDDEN,
            "this form has no valid CSRF token: reload the page and submit it again",
        );
    }
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or_default();
    let confirmed = field("confirm") == "yes";
    let back = instance_path(&id);
    let admin = &shared.admin;
    let (message, location) = match action {
        "raise" => {
            let name = field("name");
            let payload = match field("payload") {
                "" => Ok(serde_json::Value::Null),
                text => serde_json::from_str(text),
            };
            match payload {
                _ if name.is_empty() => ("Not raised: the event needs a name".to_owned(), back),
                Err(e) => (format!("Not raised: the payload is not JSON: {e}"), back),
                Ok(payload) => match admin.raise_event(&id, name, payload).await {
                    Ok(()) => (format!("Raised event `{name}`"), back),
                    Err(e) => (format!("Not raised: {e}"), back),
                },
            }
        }
        "suspend" => outcome(admin.suspend(&id, field("reason")).await, "Suspended", back),
        "resume" => outcome(admin.resume(&id).await, "Resumed", back),
        "restart" => outcome(admin.restart(&id).await, "Restarted", back),
        "terminate" | "purge" if !confirmed => (
            format!("Not done: tick \"confirm\" to {action} the instance"),
            back,
        ),
        "terminate" => outcome(
            admin.terminate(&id, field("reason")).await,
            "Terminated",
            back,
        ),
        "purge" => match admin.purge(&id).await {
            Ok(()) => (format!("Purged instance `{id}`"), "/".to_owned()),
            Err(e) => (format!("Failed: {e}"), back),
        },
        _ => {
            return layout::error_page(
                headers,
                StatusCode::NOT_FOUND,
                &format!("no action `{action}`"),
            );
        }
    };
    redirect(&location, &message)
}

fn outcome(result: Result<(), crate::error::Error>, done: &str, back: String) -> (String, String) {
    match result {
        Ok(()) => (done.to_owned(), back),
        Err(e) => (format!("Failed: {e}"), back),
    }
}

/// A 303 to `location` that shows `message` there.
pub(crate) fn redirect(location: &str, message: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, location);
    }
    if let Ok(cookie) = HeaderValue::from_str(&security::flash_cookie(message)) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}
