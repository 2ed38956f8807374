//! `durable serve`: the dashboard and its admin API over a store this process opened.
//!
//! It runs until the process gets ctrl-c (SIGINT) or SIGTERM, then stops the server, which
//! removes the store's `durable-admin.url`.

use std::io::Write;

use crate::cli::CliError;
use crate::cli::args::ServeArgs;
use crate::cli::backend::Backend;

/// Serves the dashboard over the store `backend` opened, on `args.listen`, requiring
/// `token` of every request if given, until the process is stopped.
///
/// # Errors
///
/// [`CliError`] if the address cannot be bound or the server fails.
pub(crate) fn serve(
    backend: Backend,
    args: ServeArgs,
    token: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let Backend::Store {
        admin,
        runtime,
        name,
    } = backend
    else {
        return Err(CliError::new(
            "`serve` serves a store: give it --store DIR or --store postgres://..., not --url",
        ));
    };
    runtime.block_on(async {
        // Before the address is printed: a signal sent as soon as it is seen still stops
        // the server cleanly (and removes the address file).
        let stop = StopSignals::install()?;
        let mut dashboard = crate::dashboard::Dashboard::new(admin.client().clone());
        if let Some(token) = token {
            dashboard = dashboard.token(token);
        }
        let handle = dashboard
            .serve(args.listen)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        writeln!(
            out,
            "serving the dashboard of store {name} at {} (ctrl-c stops it)",
            handle.url()
        )?;
        out.flush()?;
        stop.wait().await?;
        handle.shutdown().await;
        Ok(())
    })
}

/// The signals that stop `serve`: ctrl-c (SIGINT) and, on Unix, SIGTERM, listened for from
/// [`install`](Self::install) on.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening.
    ///
    /// # Errors
    ///
    /// [`CliError`] if the signal handlers cannot be installed.
    fn install() -> Result<Self, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|e| CliError::new(format!("cannot wait for {name}: {e}")))
            };
            Ok(Self {
                interrupt: listen(SignalKind::interrupt(), "ctrl-c")?,
                terminate: listen(SignalKind::terminate(), "SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves at the first of the signals.
    ///
    /// # Errors
    ///
    /// [`CliError`] if ctrl-c cannot be waited for (not on Unix).
    async fn wait(self) -> Result<(), CliError> {
        #[cfg(unix)]
        {
            let Self {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            Ok(())
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| CliError::new(format!("cannot wait for ctrl-c: {e}")))
    }
}
