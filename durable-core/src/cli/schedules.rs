//! `durable schedules ...`: list, show, pause, unpause, trigger, backfill and delete the
//! schedules of a store or of a running process's admin API (`/api/schedules...`).

use std::fmt::Write as _;
use std::io::Write;

use clap::Subcommand;

use crate::admin::view::{ScheduleDetail, ScheduleList};
use crate::admin::{Admin, parse_overlap};
use crate::cli::CliError;
use crate::cli::backend::Backend;
use crate::cli::remote::{Remote, RemoteError, encode_component, query};
use crate::cli::render::Table;
use crate::cli::time::{format_ms, parse_time};
use crate::error::Error;

/// `schedules`: one variant per operation.
#[derive(Debug, Subcommand)]
pub(crate) enum SchedulesCommand {
    /// List schedules, a page at a time: state and next run.
    List {
        /// Schedules per page [default: 50].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        page_size: Option<u64>,
        /// The cursor a previous page printed as its next (a schedule id).
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
    },
    /// Show one schedule: spec, policies, paused state, next runs, recent runs, counts.
    Show {
        /// The schedule id.
        id: String,
    },
    /// Pause a schedule: its ticks start nothing until unpaused.
    Pause {
        /// The schedule id.
        id: String,
        /// Why, shown with it.
        #[arg(long, default_value = "paused with the durable CLI")]
        note: String,
    },
    /// Unpause a schedule: its next tick after now runs.
    Unpause {
        /// The schedule id.
        id: String,
    },
    /// Start a run now, under the schedule's overlap policy.
    Trigger {
        /// The schedule id.
        id: String,
    },
    /// Run the ticks from FROM (included) to TO (excluded).
    Backfill {
        /// The schedule id.
        id: String,
        /// RFC 3339 (`2026-11-29T00:00:00Z`), a date, or ms since the Unix epoch.
        from: String,
        /// RFC 3339, a date, or ms since the Unix epoch.
        to: String,
        /// skip, buffer_one, buffer_all, allow_all or terminate_other.
        #[arg(long, default_value = "buffer_all")]
        overlap: String,
    },
    /// Delete a schedule: it starts nothing more (its runs stay).
    Delete {
        /// The schedule id.
        id: String,
    },
}

/// Runs `durable schedules ...`.
///
/// # Errors
///
/// [`CliError`] if the store or API cannot be reached, there is no such schedule, or an
/// argument does not parse.
pub(crate) fn execute(
    backend: &Backend,
    command: SchedulesCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    use crate::cli::commands::{done, print_json};
    match command {
        SchedulesCommand::List { page_size, after } => {
            let size = page_size.map(|n| n as usize);
            let list = call(
                backend,
                None,
                async |admin| admin.schedules(after.as_deref(), size).await,
                |remote| {
                    remote.get(&format!(
                        "/api/schedules{}",
                        query(&[
                            ("page_size", size.map(|n| n.to_string())),
                            ("after", after.clone()),
                        ])
                    ))
                },
            )?;
            if json {
                print_json(out, &list)
            } else {
                write!(out, "{}", render_list(&list))?;
                Ok(())
            }
        }
        SchedulesCommand::Show { id } => {
            let detail = call(
                backend,
                Some(&id),
                async |admin| {
                    (admin.schedule(&id).await?).ok_or_else(|| Error::ScheduleNotFound(id.clone()))
                },
                |remote| remote.get(&format!("/api/schedules/{}", encode_component(&id))),
            )?;
            if json {
                print_json(out, &detail)
            } else {
                write!(out, "{}", render_detail(&detail))?;
                Ok(())
            }
        }
        SchedulesCommand::Pause { id, note } => {
            let body = serde_json::json!({ "note": note });
            act(backend, &id, "pause", body, async |admin| {
                admin.pause_schedule(&id, &note).await
            })?;
            done(out, json, format!("asked schedule `{id}` to pause"))
        }
        SchedulesCommand::Unpause { id } => {
            act(
                backend,
                &id,
                "unpause",
                serde_json::json!({}),
                async |admin| admin.unpause_schedule(&id).await,
            )?;
            done(out, json, format!("asked schedule `{id}` to unpause"))
        }
        SchedulesCommand::Trigger { id } => {
            act(
                backend,
                &id,
                "trigger",
                serde_json::json!({}),
                async |admin| admin.trigger_schedule(&id).await,
            )?;
            done(out, json, format!("triggered a run of schedule `{id}`"))
        }
        SchedulesCommand::Backfill {
            id,
            from,
            to,
            overlap,
        } => {
            let from_ms = parse_time(&from).map_err(|e| CliError::usage(format!("FROM: {e}")))?;
            let to_ms = parse_time(&to).map_err(|e| CliError::usage(format!("TO: {e}")))?;
            let policy = parse_overlap(&overlap).map_err(|e| CliError::usage(e.to_string()))?;
            let body =
                serde_json::json!({ "from_ms": from_ms, "to_ms": to_ms, "overlap": overlap });
            act(backend, &id, "backfill", body, async |admin| {
                admin.backfill_schedule(&id, from_ms, to_ms, policy).await
            })?;
            done(
                out,
                json,
                format!(
                    "asked schedule `{id}` to backfill {} to {}",
                    format_ms(from_ms),
                    format_ms(to_ms)
                ),
            )
        }
        SchedulesCommand::Delete { id } => {
            act(
                backend,
                &id,
                "delete",
                serde_json::json!({}),
                async |admin| admin.delete_schedule(&id).await,
            )?;
            done(out, json, format!("asked schedule `{id}` to end (deleted)"))
        }
    }
}

/// Runs `call` on a store's admin, or `request` on the API; `id` names the schedule for
/// the not-found message.
fn call<T>(
    backend: &Backend,
    id: Option<&str>,
    call: impl AsyncFnOnce(&Admin) -> Result<T, Error>,
    request: impl FnOnce(&Remote) -> Result<T, RemoteError>,
) -> Result<T, CliError> {
    let not_found =
        |id: &str| CliError::new(format!("no schedule `{id}` in {}", backend.describe()));
    match backend {
        Backend::Store { admin, runtime, .. } => {
            runtime.block_on(call(admin)).map_err(|e| match (e, id) {
                (Error::ScheduleNotFound(_), Some(id)) => not_found(id),
                (e @ Error::InvalidArgument { .. }, _) => CliError::usage(e.to_string()),
                (e, _) => CliError::new(e.to_string()),
            })
        }
        Backend::Remote(remote) => request(remote).map_err(|e| match (e, id) {
            (RemoteError::Status { status: 404, .. }, Some(id)) => not_found(id),
            (RemoteError::Status { message, .. } | RemoteError::Failed(message), _) => {
                CliError::new(message)
            }
        }),
    }
}

/// An operation on schedule `id`: `POST /api/schedules/{id}/{action}` with `body`.
fn act(
    backend: &Backend,
    id: &str,
    action: &str,
    body: serde_json::Value,
    op: impl AsyncFnOnce(&Admin) -> Result<(), Error>,
) -> Result<(), CliError> {
    call(backend, Some(id), op, |remote| {
        let path = format!("/api/schedules/{}/{action}", encode_component(id));
        remote.post::<serde_json::Value>(&path, &body).map(drop)
    })
}

/// The schedules as a table, then the next page's cursor.
fn render_list(list: &ScheduleList) -> String {
    let mut table = Table::new(vec![
        "ID",
        "ORCHESTRATOR",
        "STATE",
        "NEXT RUN",
        "STARTED",
        "MISSED",
        "SKIPPED",
    ]);
    for row in &list.schedules {
        table.row(vec![
            row.id.clone(),
            row.orchestrator.clone(),
            match &row.paused {
                Some(note) => format!("paused: {note}"),
                None => "active".into(),
            },
            row.next_run_ms.map(format_ms).unwrap_or_else(|| "-".into()),
            row.started.to_string(),
            row.missed.to_string(),
            row.skipped.to_string(),
        ]);
    }
    let mut text = if table.is_empty() {
        "no schedules\n".to_string()
    } else {
        table.render()
    };
    if let Some(next) = &list.next {
        let _ = writeln!(text, "next page: --after {next}");
    }
    text
}

/// One schedule, as labelled lines and its runs as a table.
fn render_detail(detail: &ScheduleDetail) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "schedule:       {}", detail.id);
    let _ = writeln!(text, "orchestrator:   {}", detail.orchestrator);
    let _ = writeln!(text, "input:          {}", detail.input);
    let _ = writeln!(text, "spec:           {}", detail.spec);
    let _ = writeln!(text, "overlap:        {}", detail.overlap);
    let _ = writeln!(text, "catch-up:       {} ms", detail.catchup_window_ms);
    let _ = writeln!(text, "pause on fail:  {}", detail.pause_on_failure);
    match &detail.paused {
        Some(note) => {
            let _ = writeln!(text, "state:          paused: {note}");
        }
        None => {
            let _ = writeln!(text, "state:          active");
        }
    }
    let _ = writeln!(
        text,
        "started:        {}  missed: {}  skipped: {}",
        detail.started, detail.missed, detail.skipped
    );
    let times = |ms: &[u64]| {
        if ms.is_empty() {
            "-".to_string()
        } else {
            ms.iter()
                .map(|t| format_ms(*t))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(text, "next runs:      {}", times(&detail.next_runs_ms));
    let _ = writeln!(text, "queued:         {}", times(&detail.queued_ms));
    let mut runs = Table::new(vec!["INSTANCE", "SCHEDULED", "STARTED", "STATUS"]);
    for run in &detail.recent_runs {
        runs.row(vec![
            run.instance_id.clone(),
            format_ms(run.scheduled_at_ms),
            format_ms(run.started_at_ms),
            run.status.clone().unwrap_or_else(|| "purged".into()),
        ]);
    }
    if runs.is_empty() {
        text.push_str("recent runs:    none\n");
    } else {
        text.push_str("\nrecent runs:\n");
        text.push_str(&runs.render());
    }
    text
}
