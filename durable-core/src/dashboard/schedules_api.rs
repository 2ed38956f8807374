//! The schedules' JSON API: `GET /api/schedules` (a page: `page_size`, `after`),
//! `GET /api/schedules/{id}`, and `POST /api/schedules/{id}/{pause,unpause,trigger,
//! backfill,delete}`, each one call of [`Admin`](crate::admin::Admin).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::admin::parse_overlap;
use crate::dashboard::Shared;
use crate::dashboard::api::{ApiError, body, number, ok, param};

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/schedules", get(list))
        .route("/api/schedules/{id}", get(show))
        .route("/api/schedules/{id}/pause", post(pause))
        .route("/api/schedules/{id}/unpause", post(unpause))
        .route("/api/schedules/{id}/trigger", post(trigger))
        .route("/api/schedules/{id}/backfill", post(backfill))
        .route("/api/schedules/{id}/delete", post(delete))
}

/// The 404 of a schedule that does not exist.
pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no schedule `{id}` exists in this store"),
    )
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let page_size = number(&query, "page_size")?;
    let list = shared
        .admin
        .schedules(param(&query, "after"), page_size)
        .await?;
    Ok(Json(list).into_response())
}

async fn show(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Response> {
    let detail = shared.admin.schedule(&id).await?;
    Ok(Json(detail.ok_or_else(|| not_found(&id))?).into_response())
}

#[derive(Deserialize)]
struct Note {
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
struct Nothing {}

#[derive(Deserialize)]
struct Backfill {
    from_ms: u64,
    to_ms: u64,
    /// `buffer_all` if absent.
    #[serde(default)]
    overlap: Option<String>,
}

async fn pause(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Note { note } = body(&bytes)?;
    shared.admin.pause_schedule(&id, &note).await?;
    Ok(ok().into_response())
}

async fn unpause(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Nothing {} = body(&bytes)?;
    shared.admin.unpause_schedule(&id).await?;
    Ok(ok().into_response())
}

async fn trigger(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Nothing {} = body(&bytes)?;
    shared.admin.trigger_schedule(&id).await?;
    Ok(ok().into_response())
}

async fn backfill(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Backfill {
        from_ms,
        to_ms,
        overlap,
    } = body(&bytes)?;
    let overlap = parse_overlap(overlap.as_deref().unwrap_or("buffer_all"))?;
    shared
        .admin
        .backfill_schedule(&id, from_ms, to_ms, overlap)
        .await?;
    Ok(ok().into_response())
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Nothing {} = body(&bytes)?;
    shared.admin.delete_schedule(&id).await?;
    Ok(ok().into_response())
}
