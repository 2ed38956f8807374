//! The `durable` command-line tool: see `durable --help` and [`durable_core::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    durable_core::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
}
