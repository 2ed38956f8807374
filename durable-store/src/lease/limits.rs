//! Flow control for the tasks of one activity: how many run at once across every worker
//! of a store, how many start per period, and which wait first; and for the instances of
//! one orchestrator: how many run at once. Modelled on DBOS queues (`concurrency`,
//! `limiter {limit, period}`, `priority`) and Temporal task queues
//! (`maxTaskQueueActivitiesPerSecond`).

use std::time::Duration;

use crate::record::StatusKind;

/// A rate: at most `starts` starts in any window of `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// The most starts in a window (at least 1).
    pub starts: u32,
    /// The window's length (at least 1 ms).
    pub period: Duration,
}

impl Rate {
    /// At most `starts` (at least 1) starts in any window of `period` (at least 1 ms).
    pub fn new(starts: u32, period: Duration) -> Self {
        Self {
            starts: starts.max(1),
            period: period.max(Duration::from_millis(1)),
        }
    }

    /// The window in whole milliseconds, as the stores count it.
    pub fn period_ms(&self) -> u64 {
        u64::try_from(self.period.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// The flow control of one activity's tasks, set with
/// `RuntimeBuilder::activity_limits` or on the attribute
/// (`#[activity(concurrency = 3, rate = "10/1s", priority = 5)]`).
///
/// The concurrency and the rate hold across every worker of a shared store (PostgreSQL),
/// and per process on a store one process holds (fjall): a task of a limited activity is
/// claimed from the store only when a slot (and the rate) allows, and it holds its slot,
/// under its worker's lease, until its result is committed; a worker that dies frees its
/// slots when its lease lapses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ActivityLimits {
    /// The most tasks of the activity that run at once; `None`: no limit.
    pub concurrency: Option<u32>,
    /// The most starts per period; `None`: no limit.
    pub rate: Option<Rate>,
    /// Among tasks waiting (for a slot, for the rate, or for one of the worker's
    /// `activity_concurrency` slots), higher goes first; default 0. Tasks of one
    /// priority go in the order they were scheduled.
    pub priority: i32,
}

impl ActivityLimits {
    /// No limit, priority 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` tasks (at least 1) run at once.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// At most `starts` tasks start in any window of `period` (see [`Rate::new`]).
    pub fn rate(mut self, starts: u32, period: Duration) -> Self {
        self.rate = Some(Rate::new(starts, period));
        self
    }

    /// Waiting tasks of higher `priority` go first (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Whether it limits anything (a concurrency or a rate): the tasks of a limited
    /// activity are all started through a claim, which counts them.
    pub fn is_limited(&self) -> bool {
        self.concurrency.is_some() || self.rate.is_some()
    }
}

/// The flow control of one orchestrator's instances, set with
/// `RuntimeBuilder::orchestrator_limits` or on the attribute
/// (`#[orchestrator(max_running = 10)]`).
///
/// An instance started beyond the limit waits, pending, until a running one finishes;
/// waiting instances start in creation order. Like the activity limits, it holds across
/// every worker of a shared store and per process on fjall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OrchestratorLimits {
    /// The most instances that run at once ([`counts_as_running`], or pending and taken
    /// by a worker to start); `None`: no limit.
    pub max_running: Option<u32>,
}

impl OrchestratorLimits {
    /// No limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` instances (at least 1) run at once.
    pub fn max_running(mut self, n: u32) -> Self {
        self.max_running = Some(n.max(1));
        self
    }

    /// Whether it limits anything.
    pub fn is_limited(&self) -> bool {
        self.max_running.is_some()
    }
}

/// Whether an instance in status `kind` counts against its orchestrator's
/// [`OrchestratorLimits::max_running`]: it started and has not finished (running,
/// suspended or stalled).
pub fn counts_as_running(kind: StatusKind) -> bool {
    matches!(
        kind,
        StatusKind::Running
            | StatusKind::Suspended
            | StatusKind::Stalled
            | StatusKind::DeadLettered
    )
}
