//! The human output of the read commands: aligned columns (no borders, so the output
//! greps and cuts like `ps` or `kubectl get`), times as RFC 3339 UTC, payloads as compact
//! JSON on one line.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::admin::view::{
    EntityList, HistoryRow, InstanceDetail, InstanceList, SiteView, Stats, StepView, TimelineRow,
};
use crate::cli::time::format_ms;

/// Columns of text, each as wide as its widest cell; the last column is not padded.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, one line per row after the header, each ending in `\n`.
    pub(crate) fn render(&self) -> String {
        let width = |cell: &str| cell.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell}{}  ", " ".repeat(widths[i] - width(cell)));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A cell for an optional value: the value, or `-`.
fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// One line of text: newlines and tabs shown as spaces, so a message stays in its row.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A JSON value on one line.
pub(crate) fn json_line(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// `file:line`.
fn site(site: &SiteView) -> String {
    format!("{}:{}", site.file, site.line)
}

fn time(ms: Option<u64>) -> String {
    or_dash(ms.map(format_ms))
}

/// `step 3: activity `pay` at src/orders.rs:42 (in fulfil)`.
fn step(view: &StepView) -> String {
    format!(
        "step {}: {} at {} (in {})",
        view.step,
        view.operation,
        site(&view.site),
        view.site.function
    )
}

/// `completed 2, failed 1 (3 in all)`: the statuses with instances, in name order.
fn counts(counts: &BTreeMap<String, u64>) -> String {
    let total: u64 = counts.values().sum();
    let present: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(status, n)| format!("{status} {n}"))
        .collect();
    if present.is_empty() {
        "no instances".to_string()
    } else {
        format!("{} ({total} in all)", present.join(", "))
    }
}

/// `durable list`: the page, the counts of the store, and the next page's cursor.
pub(crate) fn list(list: &InstanceList) -> String {
    let mut table = Table::new(vec![
        "ID",
        "ORCHESTRATOR",
        "STATUS",
        "CREATED",
        "UPDATED",
        "MESSAGE",
    ]);
    for row in &list.instances {
        let mut message = row.message.as_deref().map(one_line).unwrap_or_default();
        if let Some(stopped) = &row.stopped_at {
            let at = format!("stopped at {}", site(&stopped.site));
            message = if message.is_empty() {
                at
            } else {
                format!("{message} ({at})")
            };
        }
        table.row(vec![
            row.id.clone(),
            format!("{} v{}", row.orchestrator, row.version),
            row.status.clone(),
            format_ms(row.created_at_ms),
            format_ms(row.updated_at_ms),
            if message.is_empty() {
                "-".into()
            } else {
                message
            },
        ]);
    }
    let mut out = if table.is_empty() {
        "no instance matches\n".to_string()
    } else {
        table.render()
    };
    let _ = writeln!(out, "\nby status: {}", counts(&list.counts));
    if let Some(next) = &list.next {
        let _ = writeln!(out, "next page: --after {next}");
    }
    out
}

/// `durable show`: the instance's fields, then its children, pending work and timeline.
pub(crate) fn detail(detail: &InstanceDetail) -> String {
    let row = &detail.summary;
    let mut fields: Vec<(&str, String)> = vec![
        ("instance", row.id.clone()),
        (
            "orchestrator",
            format!("{} v{}", row.orchestrator, row.version),
        ),
        ("status", row.status.clone()),
        ("generation", detail.generation.to_string()),
        ("created", format_ms(row.created_at_ms)),
        ("updated", format_ms(row.updated_at_ms)),
    ];
    if let Some(at_ms) = detail.starts_at_ms {
        fields.push(("starts", format_ms(at_ms)));
    }
    if let Some(at_ms) = detail.deadline_ms {
        fields.push(("deadline", format_ms(at_ms)));
    }
    if let Some(message) = &row.message {
        fields.push(("message", one_line(message)));
    }
    if let Some(stopped) = &row.stopped_at {
        fields.push(("stopped at", step(stopped)));
    }
    if let Some(status) = &row.custom_status {
        fields.push(("custom status", json_line(status)));
    }
    if let Some(parent) = &detail.parent {
        fields.push(("parent", parent.clone()));
    }
    fields.push(("input", or_dash(detail.input.as_ref().map(json_line))));
    if let Some(output) = &detail.output {
        fields.push(("output", json_line(output)));
    }
    if let Some(error) = &detail.error {
        fields.push((
            "error",
            format!("{}: {}", error.kind, one_line(&error.message)),
        ));
    }
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, value) in &fields {
        let _ = writeln!(out, "{name:width$}  {value}");
    }
    if !detail.children.is_empty() {
        let mut table = Table::new(vec!["ID", "ORCHESTRATOR", "STEP", "STATUS"]);
        for child in &detail.children {
            table.row(vec![
                child.id.clone(),
                child.orchestrator.clone(),
                child.step.to_string(),
                child.status.clone().unwrap_or_else(|| "purged".into()),
            ]);
        }
        let _ = write!(out, "\nchildren:\n{}", table.render());
    }
    out.push_str(&pending(detail));
    if !detail.timeline.is_empty() {
        let _ = write!(out, "\ntimeline:\n{}", timeline(&detail.timeline));
    }
    out
}

/// The pending-work section of `show`: empty when the instance waits for nothing.
fn pending(detail: &InstanceDetail) -> String {
    let pending = &detail.pending;
    let mut table = Table::new(vec!["STEP", "WAITS FOR", "DETAIL", "SITE"]);
    for activity in &pending.activities {
        table.row(vec![
            activity.step.to_string(),
            format!("activity `{}`", activity.activity),
            format!("attempt {}", activity.attempt),
            site(&activity.site),
        ]);
    }
    for timer in &pending.timers {
        table.row(vec![
            timer.step.to_string(),
            "timer".into(),
            format!("fires {}", format_ms(timer.fire_at_ms)),
            site(&timer.site),
        ]);
    }
    for sub in &pending.sub_orchestrations {
        table.row(vec![
            sub.step.to_string(),
            sub.operation.clone(),
            "-".into(),
            site(&sub.site),
        ]);
    }
    for event in &pending.events {
        table.row(vec![
            "-".into(),
            format!("event `{event}`"),
            "-".into(),
            "-".into(),
        ]);
    }
    if table.is_empty() {
        String::new()
    } else {
        format!("\npending:\n{}", table.render())
    }
}

fn timeline(rows: &[TimelineRow]) -> String {
    let mut table = Table::new(vec![
        "STEP", "KIND", "NAME", "OUTCOME", "ATTEMPTS", "STARTED", "ENDED", "SITE",
    ]);
    for row in rows {
        table.row(vec![
            or_dash(row.step),
            row.kind.clone(),
            row.name.clone(),
            row.outcome.clone(),
            row.attempts.to_string(),
            time(row.started_at_ms),
            time(row.ended_at_ms),
            or_dash(row.site.as_ref().map(site)),
        ]);
    }
    table.render()
}

/// `durable history`: one row per event.
pub(crate) fn history(rows: &[HistoryRow]) -> String {
    let mut table = Table::new(vec![
        "INDEX", "STEP", "KIND", "NAME", "OUTCOME", "TIME", "SITE",
    ]);
    for row in rows {
        table.row(vec![
            row.index.to_string(),
            or_dash(row.step),
            row.kind.clone(),
            or_dash(row.name.as_ref()),
            or_dash(row.outcome.as_ref()),
            time(row.at_ms),
            or_dash(row.site.as_ref().map(site)),
        ]);
    }
    table.render()
}

/// `durable stats`.
pub(crate) fn stats(stats: &Stats) -> String {
    let mut table = Table::new(vec!["STATUS", "INSTANCES"]);
    for (status, n) in &stats.counts {
        table.row(vec![status.clone(), n.to_string()]);
    }
    let mut out = table.render();
    let _ = writeln!(out, "\nwork queued: {}", stats.work_queued);
    let _ = writeln!(out, "oldest pending: {}", time(stats.oldest_pending_at_ms));
    out
}

/// `durable entities`: one row per entity, its state as JSON, then the next page's cursor.
pub(crate) fn entities(list: &EntityList) -> String {
    let mut table = Table::new(vec!["ENTITY", "KEY", "LOCKED BY", "UPDATED", "STATE"]);
    for row in &list.entities {
        table.row(vec![
            row.name.clone(),
            row.key.clone(),
            or_dash(row.locked_by.as_ref()),
            format_ms(row.updated_at_ms),
            or_dash(row.state.as_ref().map(json_line)),
        ]);
    }
    let mut out = if table.is_empty() {
        "no entity matches\n".to_string()
    } else {
        table.render()
    };
    if let Some(next) = &list.next {
        let _ = writeln!(out, "\nnext page: --after {next}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn columns_align_on_the_widest_cell_and_the_last_is_not_padded() {
        let mut table = Table::new(vec!["ID", "STATUS", "MESSAGE"]);
        table.row(vec![
            "order-1".into(),
            "failed".into(),
            "card declined".into(),
        ]);
        table.row(vec!["o2".into(), "completed".into(), "-".into()]);
        assert_eq!(
            table.render(),
            "ID       STATUS     MESSAGE\n\
             order-1  failed     card declined\n\
             o2       completed  -\n"
        );
    }
}
