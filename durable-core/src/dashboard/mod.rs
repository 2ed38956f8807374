//! The admin HTTP API and the web dashboard (feature `dashboard`): an axum
//! [`Router`] over an [`Admin`], which an application mounts in its own
//! server ([`router`]) or serves with one call ([`Dashboard::serve`]); `durable serve`
//! serves it over a store directly ([`serve_store`]).
//!
//! - `/api/...`: JSON, the views of [`crate::admin::view`]; errors are
//!   `{"error": "..."}` with 400 (bad input), 401 (token), 403 (CSRF or host), 404 (no
//!   such instance, or no such route), 405 (a method the route does not take), 409 (the
//!   instance's state refuses the request), 415 (a POST without `Content-Type:
//!   application/json`), 500 (store).
//! - `/`, `/instances/{id}` (`/instance?id=...` too, the link of the ids `.` and `..`,
//!   which browsers drop from a path), `/entities`, `/schedules`, `/schedules/{id}`
//!   (`/schedule?id=...` too):
//!   server-rendered pages (no JavaScript), whose actions are form POSTs carrying a CSRF
//!   token.
//! - `/api/schedules...`: the schedules' JSON API (`schedules_api.rs`).
//!
//! Security defaults: [`Dashboard::serve`] binds loopback only unless a bearer token is
//! set; see `security.rs` for the checks every route makes.

mod api;
mod format;
mod pages;
mod schedules_api;
mod security;
mod server;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use crate::admin::Admin;

pub use server::{Dashboard, DashboardHandle, ServeError, URL_FILE, serve_store};

/// How a dashboard behaves: its bearer token and the list's refresh interval.
#[derive(Clone, Default)]
pub struct DashboardOptions {
    token: Option<String>,
    refresh: Option<Duration>,
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("refresh", &self.refresh)
            .finish()
    }
}

impl DashboardOptions {
    /// No token, the list refreshed every 5 seconds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `token` on every request: `Authorization: Bearer TOKEN`, or, for a
    /// browser, `?token=TOKEN` once (kept in an `HttpOnly; SameSite=Strict` cookie). An
    /// empty token (an unset variable) admits no request and does not count as a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How often the instance list reloads itself while its auto-refresh is on
    /// (5 seconds by default; whole seconds, at least 1).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = Some(every);
        self
    }

    /// Whether a token is set (an empty one does not count).
    pub fn has_token(&self) -> bool {
        self.token.as_deref().is_some_and(|token| !token.is_empty())
    }

    fn refresh_secs(&self) -> u64 {
        self.refresh.map_or(5, |d| d.as_secs().max(1))
    }
}

/// What every handler reads: the admin API, the options and the CSRF secret.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) admin: Admin,
    pub(crate) options: DashboardOptions,
    pub(crate) csrf: security::Csrf,
}

/// The dashboard's routes (the JSON API under `/api/` and the pages), for an
/// application to mount in its own axum server with `Router::merge`: its pages link to
/// each other by absolute path, so it serves from the root (`/`, `/instances/..`,
/// `/entities`, `/assets/..`, `/api/..`), not under a prefix. Serve it over
/// loopback or set a token ([`DashboardOptions::token`]): it can terminate and purge
/// instances.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: durable_core::Client) {
/// use durable_core::admin::Admin;
/// use durable_core::dashboard::{DashboardOptions, router};
///
/// let app = router(Admin::new(client), DashboardOptions::new().token("s3cret"));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
/// axum::serve(listener, app).await.unwrap();
/// # }
/// ```
pub fn router(admin: Admin, options: DashboardOptions) -> Router {
    let shared = Arc::new(Shared {
        admin,
        options,
        csrf: security::Csrf::process(),
    });
    Router::new()
        .route("/", get(pages::list::page))
        .route("/instances/{id}", get(pages::instance::page))
        .route(
            "/instances/{id}/actions/{action}",
            post(pages::actions::submit),
        )
        // The same page and actions with the id in the query: the links of the ids `.`
        // and `..`, which a browser drops from a path.
        .route("/instance", get(pages::instance::page_by_query))
        .route(
            "/instance/actions/{action}",
            post(pages::actions::submit_by_query),
        )
        .route("/entities", get(pages::entities::page))
        .route("/schedules", get(pages::schedules::list))
        .route("/schedules/{id}", get(pages::schedules::page))
        .route(
            "/schedules/{id}/actions/{action}",
            post(pages::schedules::submit),
        )
        .route("/schedule", get(pages::schedules::page_by_query))
        .route(
            "/schedule/actions/{action}",
            post(pages::schedules::submit_by_query),
        )
        .route("/assets/dashboard.css", get(pages::layout::stylesheet))
        .merge(api::routes())
        // Per route, so an application can still merge this router into one with a
        // fallback of its own.
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            security::authorize,
        ))
        .with_state(shared)
}

#[cfg(test)]
mod tests;
