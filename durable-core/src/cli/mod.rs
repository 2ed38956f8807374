//! The `durable` command-line tool (feature `cli`): see and steer the instances of a store
//! (`--store DIR` for fjall, `--store postgres://...`) or of a running process (`--url
//! http://ADDR/`, its admin API).
//!
//! The binary `durable` is a call to [`run`]; tests call it in-process. Reading a store
//! opens it with [`Client::open`](crate::Client::open) under an
//! [`Admin`](crate::admin::Admin): no workflow runs, nothing is recovered.
//!
//! `args.rs` is the command line, `backend.rs` where commands go (a store or the API),
//! `remote.rs` the HTTP client of `--url`, `commands.rs` what each command does,
//! `schedules.rs` the `schedules` commands, `render.rs` the tables, `time.rs` RFC 3339
//! times, `serve.rs` the dashboard.

mod args;
mod backend;
mod commands;
mod remote;
mod render;
mod schedules;
mod serve;
mod time;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// Runs the `durable` command line `args` (the program name first, as
/// [`std::env::args_os`] gives it), printing results to `out` and errors to `err`.
/// Blocking: it runs its own async runtime, so call it outside one (or in
/// `spawn_blocking`).
///
/// Returns [`ExitCode::SUCCESS`]; 1 when the command failed (one line on `err` says why:
/// `no instance `x` in store DIR`); 2 when the command line is wrong (clap's usage
/// message).
///
/// # Examples
///
/// ```no_run
/// let mut out = Vec::new();
/// let mut err = Vec::new();
/// let code = durable_core::cli::run(
///     ["durable", "--store", "data/durable", "list", "--json"],
///     &mut out,
///     &mut err,
/// );
/// assert_eq!(code, std::process::ExitCode::SUCCESS);
/// let list: durable_core::admin::view::InstanceList = serde_json::from_slice(&out).unwrap();
/// # let _ = list;
/// ```
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let mut text = e.render().to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            // --help and --version are answers, not errors.
            let code = if e.use_stderr() {
                let _ = write!(err, "{text}");
                e.exit_code()
            } else {
                let _ = write!(out, "{text}");
                0
            };
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    match commands::execute(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(err, "error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Why a command failed: a one-line message and the process's exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// A command that failed (exit code 1).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// A command line that makes no sense (exit code 2, as clap's own usage errors).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::new(format!("cannot write the output: {e}"))
    }
}
