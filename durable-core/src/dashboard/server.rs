//! The one-call server: [`Dashboard::serve`] binds an address, serves [`router`] on it
//! in a task, and, over a store on local disk, writes the store's
//! [`URL_FILE`](URL_FILE) so `durable` finds the running process's admin address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use durable_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::client::Client;
use crate::dashboard::{DashboardOptions, router};
use crate::error::Error;

/// The file, in a fjall store's directory, holding the admin address of the process that
/// serves a dashboard over it: `http://ADDR/` and a newline. Written by
/// [`Dashboard::serve`], removed when the dashboard stops.
pub const URL_FILE: &str = "durable-admin.url";

/// Why a dashboard did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address is not a loopback address and no token is set: anyone who can reach
    /// it could terminate and purge instances.
    #[error(
        "refusing to serve the dashboard on {0} without a token: it is not a loopback address; set a bearer token (`Dashboard::token`, `durable serve --token`) or listen on 127.0.0.1"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin address file could not be written beside the store.
    #[error("cannot write the admin address to {path}: {source}")]
    UrlFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened for the dashboard.
    #[error(transparent)]
    Client(#[from] Error),
}

/// A dashboard to serve on an address of the application's choosing.
///
/// # Examples
///
/// ```no_run
/// # async fn example(client: durable_core::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use durable_core::dashboard::Dashboard;
///
/// let dashboard = Dashboard::new(client).serve(([127, 0, 0, 1], 8080)).await?;
/// println!("dashboard at {}", dashboard.url());
/// // ... run the application; the dashboard stops when `dashboard` is shut down or dropped.
/// dashboard.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Dashboard {
    client: Client,
    options: DashboardOptions,
}

impl Dashboard {
    /// A dashboard over `client`'s store, without a token.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            options: DashboardOptions::default(),
        }
    }

    /// Requires bearer `token` on every request (see [`DashboardOptions::token`]); needed to
    /// listen on an address other than loopback.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.options = self.options.token(token);
        self
    }

    /// Replaces the options.
    pub fn options(mut self, options: DashboardOptions) -> Self {
        self.options = options;
        self
    }

    /// Binds `addr` (port 0 picks a free one) and serves the dashboard there in a task
    /// until the handle is shut down or dropped. Over a store on local disk, writes
    /// `<store dir>/durable-admin.url` ([`URL_FILE`]).
    ///
    /// # Errors
    ///
    /// [`ServeError::NotLoopback`] if `addr` is not loopback and no token is set,
    /// [`ServeError::Bind`] if it cannot be bound, [`ServeError::UrlFile`] if the address
    /// file cannot be written.
    pub async fn serve(self, addr: impl Into<SocketAddr>) -> Result<DashboardHandle, ServeError> {
        let addr = addr.into();
        if !addr.ip().is_loopback() && !self.options.has_token() {
            return Err(ServeError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let url = format!("http://{}/", reachable(local));
        let url_file = match self.client.engine.store().location() {
            Some(dir) => {
                let path = dir.join(URL_FILE);
                std::fs::write(&path, format!("{url}\n")).map_err(|source| {
                    ServeError::UrlFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                Some(path)
            }
            None => None,
        };
        let app = router(Admin::new(self.client), self.options);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the dashboard stopped serving");
            }
        });
        Ok(DashboardHandle {
            addr: local,
            url,
            url_file,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// The address to write for a listener on `addr`: a wildcard address is reached through
/// loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// A dashboard being served: its address, and how to stop it. Dropping it stops the
/// server too (without waiting) and removes the address file.
#[derive(Debug)]
#[must_use = "dropping the handle stops the dashboard"]
pub struct DashboardHandle {
    addr: SocketAddr,
    url: String,
    url_file: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl DashboardHandle {
    /// The address it listens on (with the port picked, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://ADDR/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting requests, waits for those under way, and removes the address file.
    pub async fn shutdown(mut self) {
        self.stop_serving();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the server stops (it runs until [`shutdown`](Self::shutdown) or an I/O
    /// failure).
    pub async fn wait(&mut self) {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
            self.task = None;
        }
    }

    fn stop_serving(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(path) = self.url_file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for DashboardHandle {
    fn drop(&mut self) {
        self.stop_serving();
    }
}

/// What `durable serve --store ... --listen ADDR [--token T]` runs: a read-and-request
/// client over `store` ([`Client::open`]: no dispatch, no recovery) and the dashboard on
/// `listen`. Serve until ctrl-c, then [`DashboardHandle::shutdown`].
///
/// # Errors
///
/// [`ServeError::Client`] if the store cannot be read, then as [`Dashboard::serve`].
pub async fn serve_store(
    store: impl Store,
    listen: SocketAddr,
    token: Option<String>,
) -> Result<DashboardHandle, ServeError> {
    let client = Client::open(store).await?;
    let mut options = DashboardOptions::new();
    if let Some(token) = token {
        options = options.token(token);
    }
    Dashboard::new(client).options(options).serve(listen).await
}
