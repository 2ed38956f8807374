//! `/`: the instance list, with its filters (status, orchestrator, created range), counts
//! by status as links, paging by cursor and a toggleable auto-refresh.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use durable_store::StatusKind;

use crate::admin::view::{InstanceList, InstanceRow};
use crate::dashboard::Shared;
use crate::dashboard::api::{self, ApiError, param};
use crate::dashboard::format;
use crate::dashboard::pages::layout::{self, link, status_badge};

/// The filters of the list page, as its query string holds them.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    status: String,
    orchestrator: String,
    /// `datetime-local` values (UTC).
    created_from: String,
    created_before: String,
    page_size: String,
    /// Auto-refresh off.
    paused: bool,
}

impl Filters {
    fn read(query: &HashMap<String, String>) -> Self {
        let get = |name: &str| param(query, name).unwrap_or_default().to_owned();
        Self {
            status: get("status"),
            orchestrator: get("orchestrator"),
            created_from: get("created_from"),
            created_before: get("created_before"),
            page_size: get("page_size"),
            paused: param(query, "refresh") == Some("off"),
        }
    }

    /// The page's link with these filters and `after`, `refresh` and `status` as given.
    fn link(&self, status: &str, after: &str, paused: bool) -> String {
        link(
            "/",
            &[
                ("status", status),
                ("orchestrator", &self.orchestrator),
                ("created_from", &self.created_from),
                ("created_before", &self.created_before),
                ("page_size", &self.page_size),
                ("after", after),
                ("refresh", if paused { "off" } else { "" }),
            ],
        )
    }
}

/// `GET /`.
pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let filters = Filters::read(&query);
    let result = async {
        let mut api_query = query.clone();
        for (field, name) in [
            ("created_from", "created_from_ms"),
            ("created_before", "created_before_ms"),
        ] {
            if let Some(value) = param(&query, field) {
                let ms = format::parse_field_time(value).ok_or_else(|| {
                    ApiError::bad_request(format!("`{field}` is not a date and time: {value:?}"))
                })?;
                api_query.insert(name.to_owned(), ms.to_string());
            }
        }
        let filter = api::list_filter(&api_query)?;
        Ok::<_, ApiError>(shared.admin.list(&filter).await?)
    }
    .await;
    let (list, error) = match result {
        Ok(list) => (Some(list), None),
        Err(e) if e.status == StatusCode::BAD_REQUEST => (None, Some(e.message)),
        Err(e) => return layout::error_page(&headers, e.status, &e.message),
    };
    let refresh = (!filters.paused).then(|| shared.options.refresh_secs());
    let body = html! {
        h1 { "Instances" }
        @if let Some(list) = &list { (counts(list, &filters)) }
        (filter_form(&filters))
        @if let Some(message) = &error { p.error { (message) } }
        p.muted {
            @if filters.paused {
                "Auto-refresh is off. " a #refresh-toggle href=(filters.link(&filters.status, "", false)) { "Turn it on" }
            } @else {
                "Refreshes every " (shared.options.refresh_secs()) " s. "
                a #refresh-toggle href=(filters.link(&filters.status, "", true)) { "Turn auto-refresh off" }
            }
        }
        @if let Some(list) = &list {
            (table(&list.instances))
            @if let Some(next) = &list.next {
                p { a #next-page href=(filters.link(&filters.status, next, filters.paused)) { "Next page →" } }
            }
        }
    };
    layout::page(&headers, "Instances", refresh, body)
}

fn counts(list: &InstanceList, filters: &Filters) -> Markup {
    let total: u64 = list.counts.values().sum();
    html! {
        p.counts {
            a href=(filters.link("", "", filters.paused)) { "all " strong { (total) } }
            @for (status, count) in &list.counts {
                a href=(filters.link(status, "", filters.paused)) {
                    (status_badge(status)) " " strong { (count) }
                }
            }
        }
    }
}

fn filter_form(filters: &Filters) -> Markup {
    html! {
        form.filters method="get" action="/" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for status in StatusKind::ALL.map(StatusKind::as_str) {
                        option value=(status) selected[filters.status == status] { (status) }
                    }
                }
            }
            label { "Orchestrator" input type="text" name="orchestrator" value=(filters.orchestrator); }
            label { "Created from (UTC)" input type="datetime-local" step="1" name="created_from" value=(filters.created_from); }
            label { "Created before (UTC)" input type="datetime-local" step="1" name="created_before" value=(filters.created_before); }
            label { "Per page" input type="number" min="1" name="page_size" value=(filters.page_size) placeholder="50"; }
            @if filters.paused { input type="hidden" name="refresh" value="off"; }
            button type="submit" { "Filter" }
            a href="/" { "Clear" }
        }
    }
}

fn table(rows: &[InstanceRow]) -> Markup {
    html! {
        table #instances {
            thead { tr {
                th { "Instance" } th { "Orchestrator" } th { "Status" } th { "Created" }
                th { "Updated" } th { "Message" } th { "Stopped at" }
            } }
            tbody {
                @if rows.is_empty() {
                    tr { td colspan="7" .muted { "No instances match." } }
                }
                @for row in rows {
                    tr {
                        td { a.instance-link href=(layout::instance_path(&row.id)) { (row.id) } }
                        td { (row.orchestrator) span.muted { " v" (row.version) } }
                        td { (status_badge(&row.status)) }
                        td.time { (format::time(row.created_at_ms)) }
                        td.time { (format::time(row.updated_at_ms)) }
                        td { (row.message.as_deref().unwrap_or("")) }
                        td {
                            @if let Some(step) = &row.stopped_at {
                                "step " (step.step) ": " (step.operation) " "
                                span.site { (step.site.file) ":" (step.site.line) }
                            }
                        }
                    }
                }
            }
        }
    }
}
