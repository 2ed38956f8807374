//! The instance page's timeline: one row per activity, timer, sub-orchestration, entity
//! call and event wait, each a bar from scheduled to done on one time axis shared by all
//! rows, coloured by outcome (`outcome-*` classes), retries marked with the attempt count.

use maud::{Markup, html};

use crate::admin::view::TimelineRow;
use crate::dashboard::format;

/// Where a row's bar sits on the axis, in percent of its width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bar {
    pub(crate) left: f64,
    pub(crate) width: f64,
}

/// The axis: from the earliest start (or `origin_ms`, the instance's creation) to the
/// latest end, pending rows running to `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Axis {
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
}

impl Axis {
    pub(crate) fn of(rows: &[TimelineRow], origin_ms: u64, now_ms: u64) -> Self {
        let start_ms = rows
            .iter()
            .filter_map(|r| r.started_at_ms)
            .chain([origin_ms])
            .min()
            .unwrap_or(origin_ms);
        let end_ms = rows
            .iter()
            .map(|r| r.ended_at_ms.unwrap_or(now_ms))
            .chain(rows.iter().filter_map(|r| r.started_at_ms))
            .max()
            .unwrap_or(start_ms)
            .max(start_ms);
        Self { start_ms, end_ms }
    }

    /// The bar of a row; a row whose start is unknown spans from the axis's start.
    pub(crate) fn bar(&self, row: &TimelineRow, now_ms: u64) -> Bar {
        let span = (self.end_ms - self.start_ms).max(1) as f64;
        let from = row
            .started_at_ms
            .unwrap_or(self.start_ms)
            .max(self.start_ms);
        let to = row
            .ended_at_ms
            .unwrap_or(now_ms)
            .clamp(from, self.end_ms.max(from));
        let left = (from - self.start_ms) as f64 / span * 100.0;
        let width = ((to - from) as f64 / span * 100.0).min(100.0 - left);
        Bar { left, width }
    }
}

/// The CSS class of an outcome.
fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "completed" => "outcome-completed",
        "fired" => "outcome-fired",
        "failed" => "outcome-failed",
        "pending" => "outcome-pending",
        _ => "outcome-other",
    }
}

/// The timeline of `rows`, `origin_ms` the instance's creation, `now_ms` the time pending
/// rows run to.
pub(crate) fn render(rows: &[TimelineRow], origin_ms: u64, now_ms: u64) -> Markup {
    if rows.is_empty() {
        return html! { p.muted { "Nothing scheduled yet." } };
    }
    let axis = Axis::of(rows, origin_ms, now_ms);
    html! {
        div.timeline #timeline {
            div.row {
                span {}
                div.axis {
                    span { (format::time(axis.start_ms)) }
                    span { "+" (format::duration(axis.end_ms - axis.start_ms)) }
                }
                span {}
            }
            @for row in rows {
                @let bar = axis.bar(row, now_ms);
                div class={ "row timeline-row kind-" (row.kind) } data-outcome=(row.outcome) {
                    span.label {
                        span.muted { (row.kind) } " " strong.name { (row.name) }
                        @if let Some(step) = row.step { span.muted { " #" (step) } }
                        @if row.attempts > 1 {
                            span.retries title="retried" { "×" (row.attempts) " attempts" }
                        }
                    }
                    div.track title=(tooltip(row)) {
                        div class={ "bar " (outcome_class(&row.outcome)) }
                            style=(format!("left: {:.2}%; width: {:.2}%", bar.left, bar.width)) {}
                    }
                    span.outcome { (row.outcome)
                        @if let (Some(from), Some(to)) = (row.started_at_ms, row.ended_at_ms) {
                            span.muted { " " (format::duration(to.saturating_sub(from))) }
                        }
                    }
                }
            }
        }
    }
}

fn tooltip(row: &TimelineRow) -> String {
    let mut text = format!("{} {}: {}", row.kind, row.name, row.outcome);
    if let Some(site) = &row.site {
        text.push_str(&format!(" ({}:{})", site.file, site.line));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(started: Option<u64>, ended: Option<u64>, outcome: &str) -> TimelineRow {
        TimelineRow {
            kind: "activity".into(),
            name: "pay".into(),
            step: Some(0),
            started_at_ms: started,
            ended_at_ms: ended,
            outcome: outcome.into(),
            attempts: 1,
            site: None,
        }
    }

    #[test]
    fn bars_share_one_axis() {
        let rows = [
            row(Some(1_000), Some(2_000), "completed"),
            row(Some(2_000), Some(5_000), "failed"),
        ];
        let axis = Axis::of(&rows, 1_000, 9_000);
        assert_eq!(
            axis,
            Axis {
                start_ms: 1_000,
                end_ms: 5_000
            }
        );
        assert_eq!(
            axis.bar(&rows[0], 9_000),
            Bar {
                left: 0.0,
                width: 25.0
            }
        );
        assert_eq!(
            axis.bar(&rows[1], 9_000),
            Bar {
                left: 25.0,
                width: 75.0
            }
        );
    }

    #[test]
    fn pending_rows_run_to_now() {
        let rows = [
            row(Some(0), Some(1_000), "completed"),
            row(Some(1_000), None, "pending"),
        ];
        let axis = Axis::of(&rows, 0, 4_000);
        assert_eq!(axis.end_ms, 4_000);
        assert_eq!(
            axis.bar(&rows[1], 4_000),
            Bar {
                left: 25.0,
                width: 75.0
            }
        );
    }

    #[test]
    fn retries_show_the_attempt_count() {
        let mut retried = row(Some(0), Some(10), "completed");
        retried.attempts = 3;
        let html = render(&[retried], 0, 10).into_string();
        assert!(html.contains("×3 attempts"), "{html}");
        assert!(html.contains("outcome-completed"), "{html}");
    }
}
