//! The JSON API under `/api/` (paths and shapes in the module doc of
//! [`crate::dashboard`]): each route one call of [`Admin`](crate::admin::Admin).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::admin::{EntityFilter, ListFilter};
use crate::dashboard::Shared;
use crate::error::Error;

/// An error answered as `{"error": "<message>"}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no instance `{id}` exists in this store"),
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InstanceNotFound(_) | Error::ScheduleNotFound(_) => StatusCode::NOT_FOUND,
            Error::InvalidInstanceId { .. }
            | Error::InvalidArgument { .. }
            | Error::Payload(_)
            | Error::PayloadTooLarge(_)
            | Error::IsAnEntity(_)
            | Error::InvalidSchedule(_) => StatusCode::BAD_REQUEST,
            Error::InvalidState { .. }
            | Error::PurgeUnfinished { .. }
            | Error::InstanceConflict { .. } => StatusCode::CONFLICT,
            // The store kept failing and nothing was sent: try again later.
            Error::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/instances", get(list))
        .route("/api/instances/{id}", get(instance))
        .route("/api/instances/{id}/history", get(history))
        .route("/api/instances/{id}/export", get(export))
        .route("/api/stats", get(stats))
        .route("/api/entities", get(entities))
        .route("/api/instances/{id}/raise", post(raise))
        .route("/api/instances/{id}/terminate", post(terminate))
        .route("/api/instances/{id}/suspend", post(suspend))
        .route("/api/instances/{id}/resume", post(resume))
        .route("/api/instances/{id}/restart", post(restart))
        .route("/api/instances/{id}/purge", post(purge))
        .route("/api/purge", post(purge_where))
        .merge(crate::dashboard::schedules_api::routes())
        .route("/api/{*rest}", any(no_route))
        .layer(axum::middleware::map_response(json_errors))
}

/// An error axum answers before a handler runs (a path that does not decode, a body over
/// the size limit), in the API's shape: `{"error": "<its text>"}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = (response.headers().get(CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_owned(),
        false => text,
    };
    ApiError::new(status, message).into_response()
}

/// A path under `/api/` that names no route: a 404 in the API's shape.
async fn no_route(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("the admin API has no route {}", uri.path()),
    )
}

/// A method a route does not take: a 405 in the API's shape (an error page for a page).
pub(crate) async fn method_not_allowed(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let message = format!("{} does not take {method}", uri.path());
    if uri.path().starts_with("/api/") {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response()
    } else {
        crate::dashboard::pages::layout::error_page(
            &headers,
            StatusCode::METHOD_NOT_ALLOWED,
            &message,
        )
    }
}

/// A query string's parameters, an empty value read as absent (a form's blank field).
pub(crate) fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

pub(crate) fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> ApiResult<Option<T>> {
    param(query, name)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("`{name}` must be a number, not {v:?}")))
        })
        .transpose()
}

/// The [`ListFilter`] of a query string (`GET /api/instances` and the list page).
pub(crate) fn list_filter(query: &HashMap<String, String>) -> ApiResult<ListFilter> {
    Ok(ListFilter {
        status: param(query, "status").map(str::to_owned),
        orchestrator: param(query, "orchestrator").map(str::to_owned),
        created_from_ms: number(query, "created_from_ms")?,
        created_before_ms: number(query, "created_before_ms")?,
        page_size: number(query, "page_size")?,
        after: param(query, "after").map(str::to_owned),
    })
}

/// The [`EntityFilter`] of a query string (`GET /api/entities` and the entities page).
pub(crate) fn entity_filter(query: &HashMap<String, String>) -> ApiResult<EntityFilter> {
    Ok(EntityFilter {
        name: param(query, "name").map(str::to_owned),
        key_prefix: param(query, "key_prefix").map(str::to_owned),
        page_size: number(query, "page_size")?,
        after: param(query, "after").map(str::to_owned),
    })
}

/// A JSON body; an empty one reads as `{}`. (The content type was checked by
/// `security::authorize`.)
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub(crate) fn ok() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let filter = list_filter(&query)?;
    Ok(Json(shared.admin.list(&filter).await?).into_response())
}

async fn instance(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let detail = shared.admin.instance(&id).await?;
    Ok(Json(detail.ok_or_else(|| ApiError::not_found(&id))?).into_response())
}

async fn history(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Response> {
    let rows = shared.admin.history(&id).await?;
    Ok(Json(rows.ok_or_else(|| ApiError::not_found(&id))?).into_response())
}

async fn export(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Response> {
    let saved = shared
        .admin
        .export(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(&id))?;
    // The bytes `SavedHistory::save` writes, so `SavedHistory::load` reads the download.
    let bytes = postcard::to_allocvec(&saved).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("history of `{id}` does not encode: {e}"),
        )
    })?;
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn stats(State(shared): State<Arc<Shared>>) -> ApiResult<Response> {
    Ok(Json(shared.admin.stats().await?).into_response())
}

async fn entities(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let filter = entity_filter(&query)?;
    Ok(Json(shared.admin.entities(&filter).await?).into_response())
}

#[derive(Deserialize)]
struct Raise {
    name: String,
    #[serde(default)]
    payload: serde_json::Value,
}

#[derive(Deserialize)]
struct Reason {
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct Nothing {}

async fn raise(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Raise { name, payload } = body(&bytes)?;
    if name.is_empty() {
        return Err(ApiError::bad_request("the event needs a `name`"));
    }
    shared.admin.raise_event(&id, &name, payload).await?;
    Ok(ok().into_response())
}

async fn terminate(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Reason { reason } = body(&bytes)?;
    shared.admin.terminate(&id, &reason).await?;
    Ok(ok().into_response())
}

async fn suspend(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Reason { reason } = body(&bytes)?;
    shared.admin.suspend(&id, &reason).await?;
    Ok(ok().into_response())
}

async fn resume(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Nothing {} = body(&bytes)?;
    shared.admin.resume(&id).await?;
    Ok(ok().into_response())
}

async fn restart(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Nothing {} = body(&bytes)?;
    shared.admin.restart(&id).await?;
    Ok(ok().into_response())
}

async fn purge(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Nothing {} = body(&bytes)?;
    shared.admin.purge(&id).await?;
    Ok(ok().into_response())
}

async fn purge_where(State(shared): State<Arc<Shared>>, bytes: Bytes) -> ApiResult<Response> {
    let filter: ListFilter = body(&bytes)?;
    let purged = shared.admin.purge_where(&filter, &mut |_| {}).await?;
    Ok(Json(serde_json::json!({ "purged": purged })).into_response())
}
