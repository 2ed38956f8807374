//! What each command does: ask the backend, print a table or one JSON document.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::admin::{EntityFilter, ListFilter};
use crate::cli::CliError;
use crate::cli::args::{Cli, Command, Filters, PurgeArgs};
use crate::cli::backend::{self, Backend};
use crate::cli::remote::Remote;
use crate::cli::time::parse_time;
use crate::cli::{render, serve};

/// Runs the parsed command line.
///
/// # Errors
///
/// [`CliError`] if the store or the API cannot be reached, the instance does not exist,
/// or the request is refused.
pub(crate) fn execute(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let Cli {
        target,
        token,
        json,
        command,
    } = cli;
    let backend = match (&target.store, &target.url) {
        (Some(_), Some(_)) => {
            return Err(CliError::usage("give either --store or --url, not both"));
        }
        (Some(store), None) => backend::open_store(store)?,
        (None, Some(url)) => {
            if matches!(command, Command::Serve(_)) {
                return Err(CliError::usage(
                    "`serve` serves a store: give it --store, not --url",
                ));
            }
            Backend::Remote(Remote::new(url, token.clone())?)
        }
        (None, None) => {
            return Err(CliError::usage(
                "give the store with --store DIR (fjall) or --store postgres://..., or a \
                 running process's admin API with --url http://ADDR/",
            ));
        }
    };
    match command {
        Command::List(args) => {
            let mut filter = list_filter(&args.filters)?;
            filter.page_size = args.page_size.map(|n| n as usize);
            filter.after = args.after;
            let list = backend.list(&filter)?;
            if json {
                print_json(out, &list)
            } else {
                write!(out, "{}", render::list(&list))?;
                Ok(())
            }
        }
        Command::Show { id } => {
            let detail = backend.instance(&id)?;
            if json {
                print_json(out, &detail)
            } else {
                write!(out, "{}", render::detail(&detail))?;
                Ok(())
            }
        }
        Command::History { id } => {
            let history = backend.history(&id)?;
            if json {
                print_json(out, &history)
            } else {
                write!(out, "{}", render::history(&history))?;
                Ok(())
            }
        }
        Command::Stats => {
            let stats = backend.stats()?;
            if json {
                print_json(out, &stats)
            } else {
                write!(out, "{}", render::stats(&stats))?;
                Ok(())
            }
        }
        Command::Entities(args) => {
            let filter = EntityFilter {
                name: args.name,
                key_prefix: args.key_prefix,
                page_size: args.page_size.map(|n| n as usize),
                after: args.after,
            };
            let entities = backend.entities(&filter)?;
            if json {
                print_json(out, &entities)
            } else {
                write!(out, "{}", render::entities(&entities))?;
                Ok(())
            }
        }
        Command::Raise { id, name, payload } => {
            let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|e| {
                CliError::usage(format!(
                    "the payload `{payload}` is not JSON ({e}); quote text as JSON: '\"text\"'"
                ))
            })?;
            backend.raise(&id, &name, payload)?;
            done(out, json, format!("raised event `{name}` on `{id}`"))
        }
        Command::Terminate { id, reason } => {
            backend.terminate(&id, &reason)?;
            done(out, json, format!("terminated `{id}`"))
        }
        Command::Suspend { id, reason } => {
            backend.suspend(&id, &reason)?;
            done(out, json, format!("suspended `{id}`"))
        }
        Command::Resume { id } => {
            backend.resume(&id)?;
            done(out, json, format!("resumed `{id}`"))
        }
        Command::Restart { id } => {
            backend.restart(&id)?;
            done(out, json, format!("restarted `{id}`"))
        }
        Command::Purge(args) => purge(&backend, args, json, out),
        Command::Export { id, file } => {
            let events = backend.export(&id, &file)?;
            done(
                out,
                json,
                format!(
                    "exported the history of `{id}` ({events} events) to {}",
                    file.display()
                ),
            )
        }
        Command::Schedules { command } => {
            crate::cli::schedules::execute(&backend, command, json, out)
        }
        Command::Serve(args) => serve::serve(backend, args, token, out),
    }
}

/// The instance filter the options give.
fn list_filter(filters: &Filters) -> Result<ListFilter, CliError> {
    let time = |option: &str, text: &Option<String>| {
        text.as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| CliError::usage(format!("--{option}: {e}")))
    };
    Ok(ListFilter {
        status: filters.status.clone(),
        orchestrator: filters.orchestrator.clone(),
        created_from_ms: time("created-since", &filters.created_since)?,
        created_before_ms: time("created-before", &filters.created_before)?,
        ..ListFilter::default()
    })
}

/// `purge ID`, or `purge --status ...` with a progress bar on a terminal's stderr.
fn purge(
    backend: &Backend,
    args: PurgeArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if let Some(id) = args.id {
        backend.purge(&id)?;
        return if json {
            print_json(out, &serde_json::json!({ "purged": 1 }))
        } else {
            writeln!(out, "purged `{id}`")?;
            Ok(())
        };
    }
    let filter = list_filter(&args.filters)?;
    // The bar draws on the process's stderr itself, so only when that is a terminal (never
    // into a log or a test's buffer).
    let bar = std::io::stderr().is_terminal().then(|| {
        // The total, when the counts by status give it (a status and nothing else).
        let total = if filter.orchestrator.is_none()
            && filter.created_from_ms.is_none()
            && filter.created_before_ms.is_none()
        {
            let probe = ListFilter {
                page_size: Some(1),
                ..filter.clone()
            };
            backend.list(&probe).ok().and_then(|list| {
                let status = filter.status.as_deref()?.to_ascii_lowercase();
                list.counts.get(&status).copied()
            })
        } else {
            None
        };
        let bar = match total {
            Some(total) => indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template(
                    "purging {bar:40} {pos}/{len} instances ({eta} left)",
                )
                .expect("a valid template"),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} purged {pos} instances")
                    .expect("a valid template"),
            ),
        };
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let mut progress = |purged: usize| {
        if let Some(bar) = &bar {
            bar.set_position(purged as u64);
        }
    };
    let purged = backend.purge_where(&filter, &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let purged = purged?;
    if json {
        print_json(out, &serde_json::json!({ "purged": purged }))
    } else {
        let noun = if purged == 1 { "instance" } else { "instances" };
        writeln!(out, "purged {purged} {noun}")?;
        Ok(())
    }
}

/// `value` as one indented JSON document and a newline.
pub(crate) fn print_json<T: Serialize>(out: &mut dyn Write, value: &T) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// The answer of an action: its message, or `{"ok": true}` with `--json`.
pub(crate) fn done(out: &mut dyn Write, json: bool, message: String) -> Result<(), CliError> {
    if json {
        print_json(out, &serde_json::json!({ "ok": true }))
    } else {
        writeln!(out, "{message}")?;
        Ok(())
    }
}
