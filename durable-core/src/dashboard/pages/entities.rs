//! `/entities`: the entities with their state, filtered by name and key prefix, paged by
//! cursor.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;

use crate::dashboard::api::{self, ApiError, param};
use crate::dashboard::pages::layout::{self, json_block, link};
use crate::dashboard::{Shared, format};

/// `GET /entities`.
pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let list = async {
        let filter = api::entity_filter(&query)?;
        Ok::<_, ApiError>(shared.admin.entities(&filter).await?)
    }
    .await;
    let list = match list {
        Ok(list) => list,
        Err(e) => return layout::error_page(&headers, e.status, &e.message),
    };
    let name = param(&query, "name").unwrap_or_default();
    let key_prefix = param(&query, "key_prefix").unwrap_or_default();
    let body = html! {
        h1 { "Entities" }
        form.filters method="get" action="/entities" {
            label { "Name" input type="text" name="name" value=(name); }
            label { "Key prefix" input type="text" name="key_prefix" value=(key_prefix); }
            button type="submit" { "Filter" }
            a href="/entities" { "Clear" }
        }
        table #entities {
            thead { tr {
                th { "Name" } th { "Key" } th { "State" } th { "Locked by" } th { "Updated (UTC)" }
            } }
            tbody {
                @if list.entities.is_empty() {
                    tr { td colspan="5" .muted { "No entities match." } }
                }
                @for row in &list.entities {
                    tr {
                        td { (row.name) }
                        td { (row.key) }
                        td { @match &row.state { Some(state) => (json_block(state)), None => span.muted { "no state" } } }
                        td { @if let Some(owner) = &row.locked_by { a href=(layout::instance_path(owner)) { (owner) } } }
                        td { (format::time(row.updated_at_ms)) }
                    }
                }
            }
        }
        @if let Some(next) = &list.next {
            p { a href=(link("/entities", &[("name", name), ("key_prefix", key_prefix), ("after", next)])) { "Next page →" } }
        }
    };
    layout::page(&headers, "Entities", None, body)
}
