//! The command line, as clap parses it: the global options that say where the instances
//! are (`--store`, `--url`) and how to print (`--json`), and one variant per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `durable`: see and steer the workflows of a durable store.
#[derive(Debug, Parser)]
#[command(
    name = "durable",
    version,
    about = "See and steer the workflows of a durable store",
    long_about = "See and steer the workflows of a durable store: list instances, show one \
                  with its pending work, read its history with the await site of each step, \
                  raise events, terminate, suspend, resume, restart, purge, export histories \
                  for replay tests; list, show and operate schedules.\n\nGive the store with --store DIR (a fjall directory) or \
                  --store postgres://..., or a running process's admin API with --url \
                  http://ADDR/. Reading a store never runs a workflow."
)]
pub(crate) struct Cli {
    /// Where the instances are.
    #[command(flatten)]
    pub(crate) target: Target,
    /// A bearer token: the one the admin API at --url asks for, or the one `serve`
    /// requires of every request.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// Print one JSON document instead of tables (read commands), or `{"ok": true}` (actions).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the instances are: exactly one of a store or a running process's admin API
/// (before or after the command; `commands::execute` checks that one is given, and that
/// only one is where clap's group cannot: both after the command).
#[derive(Debug, Args)]
#[group(multiple = false)]
pub(crate) struct Target {
    /// The durable store: a fjall directory, or a PostgreSQL URL (`postgres://user@host/db`).
    /// A fjall store that a running process holds cannot be opened: use that process's
    /// admin API with --url.
    #[arg(long, global = true, value_name = "DIR|URL")]
    pub(crate) store: Option<String>,
    /// The admin API of a running process (`http://127.0.0.1:8080/`), as its dashboard
    /// serves it.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
}

/// One command.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List orchestration instances, a page at a time, with the counts by status.
    List(ListArgs),
    /// Show one instance: status, input, output or error, custom status, parent and
    /// children, pending work, timeline.
    Show {
        /// The instance id.
        id: String,
    },
    /// Print an instance's history, one row per event, with the await site of each step.
    History {
        /// The instance id.
        id: String,
    },
    /// Raise external event NAME on an instance, with a JSON payload.
    Raise {
        /// The instance id.
        id: String,
        /// The event name.
        name: String,
        /// The payload, as JSON (`'{"approved": true}'`, `42`, `'"text"'`, `null`).
        payload: String,
    },
    /// Terminate an instance: it stops at its next turn, the reason recorded.
    Terminate {
        /// The instance id.
        id: String,
        /// Why, recorded with it.
        #[arg(long, default_value = "terminated with the durable CLI")]
        reason: String,
    },
    /// Suspend an instance: it keeps its messages but runs no turn until resumed.
    Suspend {
        /// The instance id.
        id: String,
        /// Why, recorded with it.
        #[arg(long, default_value = "suspended with the durable CLI")]
        reason: String,
    },
    /// Resume a suspended or dead-lettered instance (a dead-lettered one's work runs
    /// again, its recovery count from 0).
    Resume {
        /// The instance id.
        id: String,
    },
    /// Restart an instance from its input, as a new run under the same id.
    Restart {
        /// The instance id.
        id: String,
    },
    /// Purge one finished instance (its record and history), or every finished instance
    /// matching a filter.
    Purge(PurgeArgs),
    /// Write an instance's history to FILE, for a replay test
    /// (`durable_core::replay_test::SavedHistory::load`).
    Export {
        /// The instance id.
        id: String,
        /// The file to write (conventionally `NAME.history`).
        file: PathBuf,
    },
    /// Instances by status, work queued and the oldest pending item.
    Stats,
    /// List entities with their state.
    Entities(EntitiesArgs),
    /// See and operate schedules: list, show, pause, unpause, trigger, backfill, delete.
    Schedules {
        /// The operation.
        #[command(subcommand)]
        command: crate::cli::schedules::SchedulesCommand,
    },
    /// Serve the dashboard and its admin API over the store.
    Serve(ServeArgs),
}

/// The filters of `list` (and of `purge --status`).
#[derive(Debug, Args)]
pub(crate) struct Filters {
    /// Only instances with this status: pending, running, completed, failed, stalled,
    /// terminated, suspended, dead-lettered.
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// Only instances of this orchestrator (its registered name).
    #[arg(long)]
    pub(crate) orchestrator: Option<String>,
    /// Only instances created at or after this time: RFC 3339
    /// (`2026-11-29T23:00:00Z`) or ms since the Unix epoch.
    #[arg(long, value_name = "TIME")]
    pub(crate) created_since: Option<String>,
    /// Only instances created before this time: RFC 3339 or ms since the Unix epoch.
    #[arg(long, value_name = "TIME")]
    pub(crate) created_before: Option<String>,
}

/// `list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Which instances.
    #[command(flatten)]
    pub(crate) filters: Filters,
    /// Instances per page [default: 50].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) page_size: Option<u64>,
    /// The cursor a previous page printed as its next.
    #[arg(long, value_name = "CURSOR")]
    pub(crate) after: Option<String>,
}

/// `purge`: one id, or a filter.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// The instance to purge (or give --status and the other filters).
    #[arg(required_unless_present = "status", conflicts_with_all = ["status", "orchestrator", "created_since", "created_before"])]
    pub(crate) id: Option<String>,
    /// Which finished instances to purge (at least --status).
    #[command(flatten)]
    pub(crate) filters: Filters,
}

/// `entities`.
#[derive(Debug, Args)]
pub(crate) struct EntitiesArgs {
    /// Only entities of this type.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only entities whose key starts with this.
    #[arg(long)]
    pub(crate) key_prefix: Option<String>,
    /// Entities per page [default: 50].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) page_size: Option<u64>,
    /// The cursor a previous page printed as its next.
    #[arg(long, value_name = "CURSOR")]
    pub(crate) after: Option<String>,
}

/// `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on; keep it on loopback unless --token is set (then every
    /// request must carry `Authorization: Bearer TOKEN`).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) listen: std::net::SocketAddr,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn purge_takes_an_id_or_a_status_never_both() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["durable", "--store", "dir", "purge"].iter().chain(args))
        };
        assert!(matches!(
            parse(&["order-1"]).unwrap().command,
            Command::Purge(ref purge) if purge.id.as_deref() == Some("order-1")
        ));
        assert!(parse(&["--status", "completed"]).is_ok());
        assert!(parse(&[]).is_err());
        assert!(parse(&["order-1", "--status", "completed"]).is_err());
    }

    #[test]
    fn the_store_and_the_url_exclude_each_other() {
        let parse = |args: &[&str]| Cli::try_parse_from(["durable"].iter().chain(args));
        assert!(parse(&["--store", "dir", "stats"]).is_ok());
        assert!(parse(&["stats", "--url", "http://127.0.0.1:8080/"]).is_ok());
        assert!(parse(&["--store", "dir", "--url", "http://x/", "stats"]).is_err());
    }
}
