//! What a schedule does with a tick while its previous run still runs (the overlap
//! policy, Temporal's), with ticks it missed while nothing ran (the catch-up window), and
//! with a run that fails (pause on failure).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a tick does while a run the schedule started is still running. Temporal's
/// policies, but `CancelOther` (this library has no cancellation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OverlapPolicy {
    /// The tick starts nothing (counted as skipped). The default.
    #[default]
    Skip,
    /// The tick waits, and runs once the running run has finished; at most one tick waits
    /// (later ones are skipped while one does).
    BufferOne,
    /// Every tick waits its turn, and they run one after another, in order.
    BufferAll,
    /// The tick starts its run beside the running ones.
    AllowAll,
    /// The running runs are terminated, then the tick's run starts.
    TerminateOther,
}

/// A schedule's policies: overlap, catch-up window, pause on failure, and how often a
/// schedule that waits for a run to finish looks at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SchedulePolicies {
    /// What a tick does while a run still runs.
    pub overlap: OverlapPolicy,
    /// How late a tick may be handled and still run, in milliseconds: a tick the schedule
    /// handles later than that after its time (no worker ran while it passed) is counted
    /// as missed and starts nothing. One year by default, as Temporal's.
    pub catchup_window_ms: u64,
    /// Whether a run that fails pauses the schedule (with a note naming the run).
    pub pause_on_failure: bool,
    /// How often, in milliseconds, the schedule reads the status of its running runs
    /// while a tick waits for them (buffered) or it pauses on failure: how soon after a
    /// run finishes the next one starts. 10 s by default.
    pub status_poll_ms: u64,
}

impl Default for SchedulePolicies {
    fn default() -> Self {
        Self {
            overlap: OverlapPolicy::Skip,
            catchup_window_ms: 365 * 24 * 3_600_000,
            pause_on_failure: false,
            status_poll_ms: 10_000,
        }
    }
}

impl SchedulePolicies {
    /// The catch-up window as a duration.
    pub fn catchup_window(&self) -> Duration {
        Duration::from_millis(self.catchup_window_ms)
    }
}
