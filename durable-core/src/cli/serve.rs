//! `durable serve`: the dashboard and its admin API over a store this process opened.
//!
//! The dashboard lives in `crate::dashboard` (feature `dashboard`, another branch of
//! this work); until the merge wires it here, `serve` says it is not built in.

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
    let _ = (backend, token, out);
    Err(CliError::new(format!(
        "`serve` is not built into this `durable` (the dashboard is not connected yet); \
         cannot serve on {}",
        args.listen
    )))
}
