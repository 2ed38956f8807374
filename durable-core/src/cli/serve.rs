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
        stopped().await?;
        handle.shutdown().await;
        Ok(())
    })
}

/// Resolves at the first ctrl-c (SIGINT) or, on Unix, SIGTERM.
async fn stopped() -> Result<(), CliError> {
    let interrupted = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminated = signal(SignalKind::terminate())
            .map_err(|e| CliError::new(format!("cannot wait for SIGTERM: {e}")))?;
        tokio::select! {
            result = interrupted => result.map_err(|e| CliError::new(format!("cannot wait for ctrl-c: {e}"))),
            _ = terminated.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    interrupted
        .await
        .map_err(|e| CliError::new(format!("cannot wait for ctrl-c: {e}")))
}
