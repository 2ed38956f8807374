//! `/instances/{id}` (or `/instance?id=...`, the link of the ids `.` and `..`): one
//! instance: its status, payloads as formatted JSON, parent and children, pending work,
//! the timeline, the event list with each await site, and the action forms.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use durable_store::StatusKind;

use crate::admin::view::{HistoryRow, InstanceDetail, PendingWork};
use crate::dashboard::pages::layout::{
    self, instance_link, instance_path, json_block, status_badge,
};
use crate::dashboard::{Shared, format, timeline};

/// `GET /instances/{id}`.
pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    render(&shared, &headers, id, &query).await
}

/// `GET /instance?id=...`: the same page, for any id (its link for `.` and `..`, which a
/// browser drops from a path).
pub(crate) async fn page_by_query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match query.get("id") {
        Some(id) => render(&shared, &headers, id.clone(), &query).await,
        None => layout::missing_id(&headers, "page", "instance", "/instance"),
    }
}

async fn render(
    shared: &Shared,
    headers: &HeaderMap,
    id: String,
    query: &HashMap<String, String>,
) -> Response {
    // Off by default: a reload would clear a form being filled in.
    let refresh = (query.get("refresh").map(String::as_str) == Some("on"))
        .then(|| shared.options.refresh_secs());
    let detail = match shared.admin.instance(&id).await {
        Ok(Some(detail)) => detail,
        Ok(None) => {
            return layout::error_page(
                headers,
                StatusCode::NOT_FOUND,
                &format!("no instance `{id}` exists in this store"),
            );
        }
        Err(e) => {
            let e = crate::dashboard::api::ApiError::from(e);
            return layout::error_page(headers, e.status, &e.message);
        }
    };
    let history = match shared.admin.history(&id).await {
        Ok(rows) => rows.unwrap_or_default(),
        Err(e) => {
            let e = crate::dashboard::api::ApiError::from(e);
            return layout::error_page(headers, e.status, &e.message);
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = html! {
        h1 { "Instance " code #instance-id { (id) } " " span #status { (status_badge(&detail.summary.status)) } }
        p.muted {
            @if refresh.is_some() {
                "Refreshes every " (shared.options.refresh_secs()) " s. "
                a #refresh-toggle href=(instance_path(&id)) { "Turn auto-refresh off" }
            } @else {
                a #refresh-toggle href=(instance_link(&id, "", &[("refresh", "on")])) { "Turn auto-refresh on" }
            }
        }
        @if detail.summary.status == StatusKind::DeadLettered.as_str() {
            p #dead-lettered.error {
                "Dead-lettered: its work was in flight at every crash of its worker, up to its limit on recoveries. "
                "Its work is kept, not run. Fix the cause, then Resume (below) to run it again with a new count, or Terminate it."
            }
        }
        (summary(&detail))
        h2 { "Timeline" }
        (timeline::render(&detail.timeline, detail.summary.created_at_ms, now_ms))
        (payloads(&detail))
        (pending(&detail.pending))
        h2 { "Actions" }
        (super::actions::forms(&id, shared.csrf.token()))
        h2 { "History" }
        (events(&history))
    };
    layout::page(headers, &id, refresh, body)
}

fn summary(detail: &InstanceDetail) -> Markup {
    let row = &detail.summary;
    html! {
        dl.summary {
            dt { "Orchestrator" } dd { (row.orchestrator) " v" (row.version) }
            dt { "Generation" } dd { (detail.generation) }
            dt { "Created" } dd { (format::time(row.created_at_ms)) " UTC" }
            dt { "Updated" } dd { (format::time(row.updated_at_ms)) " UTC" }
            @if let Some(at_ms) = detail.starts_at_ms {
                dt { "Starts" } dd #starts { (format::time(at_ms)) " UTC" }
            }
            @if let Some(at_ms) = detail.deadline_ms {
                dt { "Deadline" } dd #deadline { (format::time(at_ms)) " UTC" }
            }
            @if let Some(message) = &row.message {
                dt { "Message" } dd.error { (message) }
            }
            @if let Some(step) = &row.stopped_at {
                dt { "Stopped at" } dd {
                    "step " (step.step) ": " (step.operation) " "
                    span.site { (step.site.file) ":" (step.site.line) " in " (step.site.function) }
                }
            }
            @if let Some(parent) = &detail.parent {
                dt { "Parent" } dd { a #parent href=(instance_path(parent)) { (parent) } }
            }
            @if !detail.children.is_empty() {
                dt { "Children" } dd {
                    @for child in &detail.children {
                        a.child href=(instance_path(&child.id)) { (child.id) }
                        " (" (child.orchestrator) ", step " (child.step) ", "
                        (child.status.as_deref().unwrap_or("purged")) ") "
                    }
                }
            }
        }
    }
}

fn payloads(detail: &InstanceDetail) -> Markup {
    html! {
        h2 { "Input" }
        div #input { @match &detail.input { Some(v) => (json_block(v)), None => p.muted { "none" } } }
        @if let Some(output) = &detail.output {
            h2 { "Output" }
            div #output { (json_block(output)) }
        }
        @if let Some(error) = &detail.error {
            h2 { "Error" }
            div #error { p.error { strong { (error.kind) } ": " } pre.json { (error.message) } }
        }
        @if let Some(custom) = &detail.summary.custom_status {
            h2 { "Custom status" }
            div #custom-status { (json_block(custom)) }
        }
    }
}

fn pending(work: &PendingWork) -> Markup {
    let empty = work.activities.is_empty()
        && work.timers.is_empty()
        && work.sub_orchestrations.is_empty()
        && work.events.is_empty();
    html! {
        h2 { "Pending work" }
        @if empty {
            p.muted { "Nothing pending." }
        } @else {
            ul #pending {
                @for a in &work.activities {
                    li { "activity " strong { (a.activity) } " (step " (a.step) ", attempt " (a.attempt) ") "
                         span.site { (a.site.file) ":" (a.site.line) } }
                }
                @for t in &work.timers {
                    li { "timer (step " (t.step) ") fires at " (format::time(t.fire_at_ms)) " UTC "
                         span.site { (t.site.file) ":" (t.site.line) } }
                }
                @for s in &work.sub_orchestrations {
                    li { "sub-orchestration: " (s.operation) " (step " (s.step) ") "
                         span.site { (s.site.file) ":" (s.site.line) } }
                }
                @for e in &work.events {
                    li { "waits for event " strong { (e) } }
                }
            }
        }
    }
}

fn events(rows: &[HistoryRow]) -> Markup {
    html! {
        table #history {
            thead { tr {
                th { "#" } th { "Step" } th { "Kind" } th { "Name" } th { "Outcome" }
                th { "Time (UTC)" } th { "Site" } th { "Payload" }
            } }
            tbody {
                @for row in rows {
                    tr {
                        td { (row.index) }
                        td { @if let Some(step) = row.step { (step) } }
                        td { (row.kind) }
                        td { (row.name.as_deref().unwrap_or("")) }
                        td { (row.outcome.as_deref().unwrap_or("")) }
                        td.time { @if let Some(at) = row.at_ms { (format::time(at)) } }
                        td.site { @if let Some(site) = &row.site { (site.file) ":" (site.line) } }
                        td { @if let Some(payload) = &row.payload { (json_block(payload)) } }
                    }
                }
            }
        }
    }
}
