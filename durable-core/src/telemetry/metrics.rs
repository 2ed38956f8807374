//! The runtime's metrics, through the [`metrics`](https://docs.rs/metrics) facade (the
//! `metrics` feature): the application installs a recorder (Prometheus, OTLP, ...) and
//! reads them; names and units are in the [module doc](super). Without the feature every
//! function here is empty and compiles to nothing; with it and no recorder installed,
//! each is a load of the facade's global and a call on its no-op recorder.

use std::time::Duration;

/// A turn of an orchestration ran (its replay step and its commit), taking `latency`.
#[inline]
pub(crate) fn turn(latency: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("durable_turns_total").increment(1);
        metrics::histogram!("durable_turn_duration_seconds").record(latency.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = latency;
}

/// A turn found no execution in the cache and replayed the instance's history.
#[inline]
pub(crate) fn replay() {
    #[cfg(feature = "metrics")]
    metrics::counter!("durable_replays_total").increment(1);
}

/// An activity attempt ended after `latency`, `failed` or not (a timeout and a panic are
/// failures).
#[inline]
pub(crate) fn activity(latency: Duration, failed: bool) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("durable_activity_executions_total").increment(1);
        if failed {
            metrics::counter!("durable_activity_failures_total").increment(1);
        }
        metrics::histogram!("durable_activity_duration_seconds").record(latency.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (latency, failed);
}

/// Group commit wrote `commits` commits in one store write.
#[inline]
pub(crate) fn commit_batch(commits: usize) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("durable_commit_batch_size").record(commits as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = commits;
}

/// `waiting` activities wait for a slot ([`RuntimeBuilder::activity_concurrency`](crate::RuntimeBuilder::activity_concurrency)).
#[inline]
pub(crate) fn activity_queue_depth(waiting: usize) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("durable_activity_queue_depth").set(waiting as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = waiting;
}

/// The clock the latencies above are measured on: `Some(now)` only when the `metrics`
/// feature is on, so a build without it reads no clock per turn.
#[inline]
pub(crate) fn started() -> Option<std::time::Instant> {
    #[cfg(feature = "metrics")]
    return Some(std::time::Instant::now());
    #[cfg(not(feature = "metrics"))]
    None
}
