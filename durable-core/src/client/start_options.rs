//! [`StartOptions`]: how a start runs beyond its input: when its first turn runs (a
//! delayed start), how long the whole run may take (an execution timeout), and how many
//! crashes of its worker it may cause before it is parked (dead-letter). Given to
//! [`Client::start_with`](crate::Client::start_with); [`Client::start`](crate::Client::start)
//! is a start with the default options.
//!
//! Modelled on DBOS's enqueue options (`delay_seconds`, `workflow_timeout`,
//! `max_recovery_attempts`) and
//! Temporal's start delay and workflow execution timeout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Options of a start ([`Client::start_with`](crate::Client::start_with)). The default
/// starts at once with no execution timeout, as [`Client::start`](crate::Client::start)
/// does. Serializable, so a schedule's action keeps them in its state (a field missing
/// from what was stored takes its default).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use durable_core::StartOptions;
///
/// let options = StartOptions::new()
///     .start_delay(Duration::from_secs(60))
///     .execution_timeout(Duration::from_secs(3600));
/// assert_eq!(options.timeout(), Some(Duration::from_secs(3600)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StartOptions {
    start: Option<StartTime>,
    execution_timeout: Option<Duration>,
    max_recoveries: Option<u32>,
}

/// When a delayed start runs its first turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum StartTime {
    At(SystemTime),
    After(Duration),
}

impl StartOptions {
    /// The default options: start at once, no execution timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the instance's first turn at `at` by the runtime's clock, not before (at once
    /// if `at` has passed). The instance is recorded at once: it is listed as pending,
    /// and its id is taken (a second start of the id returns it). The start survives
    /// restarts: it is a durable timer. Replaces an earlier
    /// [`start_delay`](Self::start_delay).
    pub fn start_at(mut self, at: SystemTime) -> Self {
        self.start = Some(StartTime::At(at));
        self
    }

    /// Runs the instance's first turn `delay` after the start call, by the runtime's
    /// clock: [`start_at`](Self::start_at) the call's time plus `delay`. Replaces an
    /// earlier `start_at`.
    pub fn start_delay(mut self, delay: Duration) -> Self {
        self.start = Some(StartTime::After(delay));
        self
    }

    /// Fails the instance with [`FailureKind::TimedOut`](crate::record::FailureKind::TimedOut)
    /// once `timeout` has passed since it started (since its start time, for a delayed
    /// start), whatever it is doing then (waiting on a timer, an event, an activity or a
    /// child), across restarts and across continue-as-new: the timeout spans the whole
    /// chain of generations, as Temporal's workflow execution timeout does. Activities and
    /// children still running are not cancelled; their results are dropped.
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        self.execution_timeout = Some(timeout);
        self
    }

    /// Parks the instance after `n` crashes (at least 1) if it crashes its worker every
    /// time it runs (the process dies in its turn or its activity): its status becomes
    /// [`Status::DeadLettered`](crate::record::Status::DeadLettered), its work kept, until
    /// an operator resumes it (DBOS's `max_recovery_attempts`). Only the crashes while it
    /// ran alone count (see `docs/OPERATIONS.md`, "Dead-lettered instances"). Overrides
    /// the runtime's [`RuntimeBuilder::max_recoveries`](crate::RuntimeBuilder::max_recoveries)
    /// (off by default) for this instance.
    pub fn max_recoveries(mut self, n: u32) -> Self {
        self.max_recoveries = Some(n.max(1));
        self
    }

    /// The limit set with [`max_recoveries`](Self::max_recoveries).
    pub fn recoveries(&self) -> Option<u32> {
        self.max_recoveries
    }

    /// The execution timeout set with [`execution_timeout`](Self::execution_timeout).
    pub fn timeout(&self) -> Option<Duration> {
        self.execution_timeout
    }

    /// When a start with these options made at `now_ms` (milliseconds since the Unix
    /// epoch) runs its first turn, if later than `now_ms`; `None` to run at once.
    pub(crate) fn start_ms(&self, now_ms: u64) -> Option<u64> {
        let at_ms = match self.start? {
            StartTime::At(at) => millis(at),
            StartTime::After(delay) => now_ms.saturating_add(duration_ms(delay)),
        };
        (at_ms > now_ms).then_some(at_ms)
    }

    /// The execution deadline of a start made at `now_ms`, in milliseconds since the Unix
    /// epoch: its start time plus the execution timeout.
    pub(crate) fn deadline_ms(&self, now_ms: u64) -> Option<u64> {
        let timeout = self.execution_timeout?;
        let started = self.start_ms(now_ms).unwrap_or(now_ms);
        Some(started.saturating_add(duration_ms(timeout)))
    }
}

/// `at` in milliseconds since the Unix epoch (0 before it).
fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, duration_ms)
}

/// `d` in whole milliseconds, rounded up (a timer never fires early), saturating.
fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_start_at_once_without_deadline() {
        let options = StartOptions::new();
        assert_eq!(options.start_ms(1_000), None);
        assert_eq!(options.deadline_ms(1_000), None);
    }

    #[test]
    fn a_delay_starts_later_and_the_deadline_counts_from_the_start() {
        let options = StartOptions::new()
            .start_delay(Duration::from_secs(10))
            .execution_timeout(Duration::from_secs(5));
        assert_eq!(options.start_ms(1_000), Some(11_000));
        assert_eq!(options.deadline_ms(1_000), Some(16_000));
    }

    #[test]
    fn a_start_time_already_passed_starts_at_once() {
        let options = StartOptions::new().start_at(UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(options.start_ms(5_000), None);
        let options = options.execution_timeout(Duration::from_millis(1));
        assert_eq!(options.deadline_ms(5_000), Some(5_001));
    }
}
