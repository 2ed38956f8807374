//! `/schedules`: the schedules with their state and next run, and one schedule's page
//! (its description, its recent runs linking to their instances) with the forms of its
//! operations: pause (with a note), unpause, trigger, backfill (a range and an overlap
//! policy) and delete (its "confirm" box ticked), each a POST to
//! `/schedules/{id}/actions/{action}` carrying the CSRF token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use crate::admin::parse_overlap;
use crate::admin::view::ScheduleDetail;
use crate::dashboard::api::{ApiError, param};
use crate::dashboard::pages::actions::redirect;
use crate::dashboard::pages::layout::{
    self, instance_path, json_block, link, object_link, status_badge,
};
use crate::dashboard::{Shared, format};

/// The page of schedule `id` (`/schedules/{id}`, or `/schedule?id=` for `.` and `..`).
pub(crate) fn schedule_path(id: &str) -> String {
    object_link("schedule", id, "", &[])
}

/// `GET /schedules`.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let list = async {
        let page_size = crate::dashboard::api::number(&query, "page_size")?;
        let after = param(&query, "after");
        Ok::<_, ApiError>(shared.admin.schedules(after, page_size).await?)
    }
    .await;
    let list = match list {
        Ok(list) => list,
        Err(e) => return layout::error_page(&headers, e.status, &e.message),
    };
    let body = html! {
        h1 { "Schedules" }
        table #schedules {
            thead { tr {
                th { "Schedule" } th { "Orchestrator" } th { "State" } th { "Next run (UTC)" }
                th { "Started" } th { "Missed" } th { "Skipped" }
            } }
            tbody {
                @if list.schedules.is_empty() {
                    tr { td colspan="7" .muted { "No schedules." } }
                }
                @for row in &list.schedules {
                    tr {
                        td { a.schedule href=(schedule_path(&row.id)) { (row.id) } }
                        td { (row.orchestrator) }
                        td { (state(row.paused.as_deref())) }
                        td { @match row.next_run_ms { Some(ms) => (format::time(ms)), None => span.muted { "none" } } }
                        td { (row.started) }
                        td { (row.missed) }
                        td { (row.skipped) }
                    }
                }
            }
        }
        @if let Some(next) = &list.next {
            p { a href=(link("/schedules", &[("after", next)])) { "Next page →" } }
        }
    };
    layout::page(&headers, "Schedules", None, body)
}

fn state(paused: Option<&str>) -> Markup {
    html! {
        @match paused {
            Some(note) => { (status_badge("suspended")) " paused: " span.note { (note) } }
            None => (status_badge("running")),
        }
    }
}

/// `GET /schedules/{id}`.
pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(&shared, &headers, id).await
}

/// `GET /schedule?id=...`: the same page, for any id (its link for `.` and `..`, which a
/// browser drops from a path).
pub(crate) async fn page_by_query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match query.get("id") {
        Some(id) => render(&shared, &headers, id.clone()).await,
        None => layout::missing_id(&headers, "page", "schedule", "/schedule"),
    }
}

async fn render(shared: &Shared, headers: &HeaderMap, id: String) -> Response {
    let detail = match shared.admin.schedule(&id).await {
        Ok(Some(detail)) => detail,
        Ok(None) => {
            return layout::error_page(
                headers,
                StatusCode::NOT_FOUND,
                &format!("no schedule `{id}` exists in this store"),
            );
        }
        Err(e) => {
            let e = ApiError::from(e);
            return layout::error_page(headers, e.status, &e.message);
        }
    };
    let body = html! {
        h1 { "Schedule " code #schedule-id { (detail.id) } }
        (summary(&detail))
        h2 { "Recent runs" }
        table #runs {
            thead { tr { th { "Instance" } th { "Scheduled (UTC)" } th { "Started (UTC)" } th { "Status" } } }
            tbody {
                @if detail.recent_runs.is_empty() {
                    tr { td colspan="4" .muted { "No runs yet." } }
                }
                @for run in &detail.recent_runs {
                    tr {
                        td { a.run href=(instance_path(&run.instance_id)) { (run.instance_id) } }
                        td { (format::time(run.scheduled_at_ms)) }
                        td { (format::time(run.started_at_ms)) }
                        td { @match &run.status { Some(s) => (status_badge(s)), None => span.muted { "purged" } } }
                    }
                }
            }
        }
        h2 { "Actions" }
        p.muted { "Requests take effect when a runtime with schedules next runs the schedule." }
        (forms(&detail.id, shared.csrf.token()))
    };
    layout::page(headers, &detail.id, None, body)
}

fn summary(detail: &ScheduleDetail) -> Markup {
    let times = |ms: &[u64]| {
        ms.iter()
            .map(|t| format::time(*t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    html! {
        dl.summary {
            dt { "State" } dd #state { (state(detail.paused.as_deref())) }
            dt { "Orchestrator" } dd { (detail.orchestrator) }
            dt { "Input" } dd { (json_block(&detail.input)) }
            dt { "Spec" } dd { (json_block(&detail.spec)) }
            dt { "Overlap" } dd { (detail.overlap) }
            dt { "Catch-up window" } dd { (format::duration(detail.catchup_window_ms)) }
            dt { "Pause on failure" } dd { (if detail.pause_on_failure { "yes" } else { "no" }) }
            dt { "Next runs (UTC)" } dd #next-runs { (times(&detail.next_runs_ms)) }
            @if !detail.queued_ms.is_empty() {
                dt { "Queued (UTC)" } dd { (times(&detail.queued_ms)) }
            }
            dt { "Started" } dd { (detail.started) }
            dt { "Missed" } dd { (detail.missed) }
            dt { "Skipped" } dd { (detail.skipped) }
        }
    }
}

/// The operation forms of schedule `id`.
fn forms(id: &str, csrf: &str) -> Markup {
    let action = |name: &str| object_link("schedule", id, &format!("/actions/{name}"), &[]);
    html! {
        div.actions {
            form.action method="post" action=(action("pause")) {
                input type="hidden" name="csrf" value=(csrf);
                label { "Note" input type="text" name="note"; }
                button #pause type="submit" { "Pause" }
            }
            form.action method="post" action=(action("unpause")) {
                input type="hidden" name="csrf" value=(csrf);
                button #unpause type="submit" { "Unpause" }
            }
            form.action method="post" action=(action("trigger")) {
                input type="hidden" name="csrf" value=(csrf);
                button #trigger type="submit" { "Trigger now" }
            }
            form.action method="post" action=(action("backfill")) {
                input type="hidden" name="csrf" value=(csrf);
                label { "From (UTC)" input type="datetime-local" name="from" step="1" required; }
                label { "To (UTC)" input type="datetime-local" name="to" step="1" required; }
                label { "Overlap" select name="overlap" {
                    @for policy in ["buffer_all", "allow_all", "buffer_one", "skip", "terminate_other"] {
                        option value=(policy) { (policy) }
                    }
                } }
                button #backfill type="submit" { "Backfill" }
            }
            form.action method="post" action=(action("delete")) {
                input type="hidden" name="csrf" value=(csrf);
                label.check { input type="checkbox" name="confirm" value="yes" required; "confirm: it starts nothing more" }
                button #delete type="submit" { "Delete" }
            }
        }
    }
}

/// `POST /schedules/{id}/actions/{action}` (a form).
pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    act(&shared, &headers, id, &action, &form).await
}

/// `POST /schedule/actions/{action}?id=...` (a form): the same, for any id (the forms of
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
        None => layout::missing_id(&headers, "action", "schedule", "/schedule/actions/ACTION"),
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
    let back = schedule_path(&id);
    let admin = &shared.admin;
    let result = match action {
        "pause" => admin
            .pause_schedule(&id, field("note"))
            .await
            .map(|()| "Asked to pause".to_owned()),
        "unpause" => admin
            .unpause_schedule(&id)
            .await
            .map(|()| "Asked to unpause".to_owned()),
        "trigger" => admin
            .trigger_schedule(&id)
            .await
            .map(|()| "Triggered a run".to_owned()),
        "backfill" => {
            let from = format::parse_field_time(field("from"));
            let to = format::parse_field_time(field("to"));
            match (from, to, parse_overlap(field("overlap"))) {
                (Some(from), Some(to), Ok(overlap)) => admin
                    .backfill_schedule(&id, from, to, overlap)
                    .await
                    .map(|()| {
                        format!(
                            "Asked to backfill {} to {} UTC",
                            format::time(from),
                            format::time(to)
                        )
                    }),
                (_, _, Err(e)) => return redirect(&back, &format!("Not backfilled: {e}")),
                _ => return redirect(&back, "Not backfilled: give both times as YYYY-MM-DDTHH:MM"),
            }
        }
        "delete" if field("confirm") != "yes" => {
            return redirect(&back, "Not done: tick \"confirm\" to delete the schedule");
        }
        "delete" => match admin.delete_schedule(&id).await {
            Ok(()) => {
                return redirect(
                    "/schedules",
                    &format!("Asked schedule `{id}` to end (deleted)"),
                );
            }
            Err(e) => Err(e),
        },
        _ => {
            return layout::error_page(
                headers,
                StatusCode::NOT_FOUND,
                &format!("no action `{action}`"),
            );
        }
    };
    match result {
        Ok(message) => redirect(&back, &message),
        Err(e) => redirect(&back, &format!("Failed: {e}")),
    }
}
