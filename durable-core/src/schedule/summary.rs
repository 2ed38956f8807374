//! A schedule summed up from its instance's input alone (the state its generation started
//! with): what a list of schedules shows, one record read per schedule, where
//! [`ScheduleHandle::describe`](super::ScheduleHandle::describe) reads its recent runs'
//! records too.

use super::state::ScheduleState;
use crate::error::Error;

/// A schedule's state in brief.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The schedule's id (not its instance's).
    pub(crate) id: String,
    /// The orchestrator each tick starts.
    pub(crate) orchestrator: String,
    /// The note it was paused with; `None` while it runs.
    pub(crate) paused: Option<String>,
    /// Its next tick (without jitter), in milliseconds since the Unix epoch; `None` while
    /// paused or once its spec has no more ticks.
    pub(crate) next_run_ms: Option<u64>,
    /// Runs it started.
    pub(crate) started: u64,
    /// Ticks handled too late for the catch-up window.
    pub(crate) missed: u64,
    /// Ticks its overlap policy skipped.
    pub(crate) skipped: u64,
}

/// The summary of the schedule whose instance's input is `input`.
///
/// # Errors
///
/// [`Error::Payload`] if `input` does not decode as a schedule's state; the error of
/// [`ScheduleSpec`](super::ScheduleSpec) if its spec no longer compiles.
pub(crate) fn summary(input: &[u8]) -> Result<Summary, Error> {
    let state: ScheduleState = crate::payload::decode(input)?;
    let next_run_ms = state.next_ticks(1)?.first().copied();
    Ok(Summary {
        orchestrator: state.schedule.action.orchestrator().to_string(),
        id: state.id,
        paused: state.paused,
        next_run_ms,
        started: state.started,
        missed: state.missed,
        skipped: state.skipped,
    })
}
