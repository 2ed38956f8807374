//! The admin API's schedules (feature `schedules`): a page of them read from the
//! instances whose id starts with `schedule:`, one described, and the operations an
//! operator takes on one. A tool's client runs nothing, so a request (pause, trigger,
//! backfill, delete) is raised to the schedule's instance and takes effect when a runtime
//! built with `schedules()` next runs it; its description shows it from then on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::view::{ScheduleDetail, ScheduleList, ScheduleRow, ScheduleRunView};
use crate::client::Client;
use crate::error::Error;
use crate::schedule::summary;
use crate::schedule::{OverlapPolicy, SCHEDULE_INSTANCE_PREFIX, ScheduleDescription};

/// How many next runs a schedule's detail shows.
pub(crate) const NEXT_RUNS: usize = 5;

/// A page of at most `page_size` schedules after id `after`, in id order: one page of
/// records read, each row summed up from its record alone (not its runs').
pub(super) async fn list(
    client: &Client,
    after: Option<&str>,
    page_size: usize,
) -> Result<ScheduleList, Error> {
    let store = client.engine.store();
    let after = after.map(|id| format!("{SCHEDULE_INSTANCE_PREFIX}{id}"));
    let page_size = page_size.max(1);
    let records =
        store.instances_with_prefix(SCHEDULE_INSTANCE_PREFIX, after.as_deref(), page_size)?;
    let next = (records.len() == page_size)
        .then(|| records.last().map(|(id, _)| schedule_id(id).to_string()))
        .flatten();
    let mut schedules = Vec::with_capacity(records.len());
    for (_, record) in &records {
        // A deleted schedule whose instance is not purged yet is no schedule.
        if record.status.is_terminal() {
            continue;
        }
        let summary = summary::summary(&record.input)?;
        schedules.push(ScheduleRow {
            id: summary.id,
            orchestrator: summary.orchestrator,
            paused: summary.paused,
            next_run_ms: summary.next_run_ms,
            started: summary.started,
            missed: summary.missed,
            skipped: summary.skipped,
        });
    }
    Ok(ScheduleList { schedules, next })
}

/// Schedule `id` described; `None` if there is none.
pub(super) async fn detail(client: &Client, id: &str) -> Result<Option<ScheduleDetail>, Error> {
    match client.schedule(id).describe(NEXT_RUNS).await {
        Ok(description) => Ok(Some(view(description))),
        Err(Error::ScheduleNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn view(description: ScheduleDescription) -> ScheduleDetail {
    let ScheduleDescription {
        id,
        schedule,
        paused,
        next_runs,
        recent_runs,
        queued,
        missed,
        skipped,
        started,
        ..
    } = description;
    // A spec is strings and numbers: it always serializes.
    let spec = serde_json::to_value(&schedule.spec).unwrap_or_default();
    ScheduleDetail {
        id,
        spec,
        orchestrator: schedule.action.orchestrator().to_string(),
        input: schedule.action.input().clone(),
        overlap: overlap_name(schedule.policies.overlap).to_string(),
        catchup_window_ms: schedule.policies.catchup_window_ms,
        pause_on_failure: schedule.policies.pause_on_failure,
        paused,
        next_runs_ms: next_runs.into_iter().map(millis).collect(),
        recent_runs: (recent_runs.into_iter())
            .map(|run| ScheduleRunView {
                instance_id: run.instance_id,
                scheduled_at_ms: millis(run.scheduled_at),
                started_at_ms: millis(run.started_at),
                status: run.status.map(|s| s.as_str().to_string()),
            })
            .collect(),
        queued_ms: queued.into_iter().map(millis).collect(),
        missed,
        skipped,
        started,
    }
}

/// Asks schedule `id` to end: it starts nothing more once a runtime handles the request.
/// A schedule whose instance has ended already is purged.
pub(super) async fn delete(client: &Client, id: &str) -> Result<(), Error> {
    let instance = format!("{SCHEDULE_INSTANCE_PREFIX}{id}");
    let record = client.record(&instance).await?;
    match record {
        None => Err(Error::ScheduleNotFound(id.to_string())),
        Some(record) if record.status.is_terminal() => client.purge(&instance).await,
        Some(_) => client.schedule(id).request_delete().await,
    }
}

/// The overlap policy's name in the views: `skip`, `buffer_one`, `buffer_all`,
/// `allow_all`, `terminate_other`.
pub fn overlap_name(overlap: OverlapPolicy) -> &'static str {
    match overlap {
        OverlapPolicy::Skip => "skip",
        OverlapPolicy::BufferOne => "buffer_one",
        OverlapPolicy::BufferAll => "buffer_all",
        OverlapPolicy::AllowAll => "allow_all",
        OverlapPolicy::TerminateOther => "terminate_other",
    }
}

/// The overlap policy [`overlap_name`] names (`-` may stand for `_`).
///
/// # Errors
///
/// [`Error::InvalidArgument`] for another name.
pub fn parse_overlap(name: &str) -> Result<OverlapPolicy, Error> {
    match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "skip" => Ok(OverlapPolicy::Skip),
        "buffer_one" => Ok(OverlapPolicy::BufferOne),
        "buffer_all" => Ok(OverlapPolicy::BufferAll),
        "allow_all" => Ok(OverlapPolicy::AllowAll),
        "terminate_other" => Ok(OverlapPolicy::TerminateOther),
        _ => Err(Error::InvalidArgument {
            argument: "overlap",
            value: name.to_string(),
            hint: "give skip, buffer_one, buffer_all, allow_all or terminate_other".into(),
        }),
    }
}

fn schedule_id(instance: &str) -> &str {
    instance
        .strip_prefix(SCHEDULE_INSTANCE_PREFIX)
        .unwrap_or(instance)
}

fn millis(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
