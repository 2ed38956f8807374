//! Retry policies for activity calls. The waits between attempts are durable timers, so a
//! retry schedule survives restarts; every attempt shares the call's idempotency key.
//!
//! The attempt number has one source of truth, the activity's task: it is 1 for a call's
//! first execution, a redelivery after a crash raises it (durably, before it runs again),
//! and a retry follows on from the number of the execution that failed, which the
//! history records with the failure. So every execution counts once, and a replay counts
//! the same.

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ActivityError, Timeout};
use crate::handle::Activity;
use crate::join::Either;
use crate::orchestration_context::OrchestrationContext;
use crate::replay::recorded::{LibraryChange, Patch};
use crate::replay::step::Attempt;

/// The change that stopped retrying errors no attempt can mend, as recorded in histories.
const NON_RETRYABLE_ERRORS: Patch = Patch::Library(LibraryChange::NonRetryableErrors);

/// The change that counts every execution of a call once: a retry follows on from the
/// execution that failed. Before it, a retry counted on from the retry before, missing
/// the redeliveries. Asked only where the two rules differ.
const EVERY_EXECUTION_COUNTED: Patch = Patch::Library(LibraryChange::EveryExecutionCounted);

/// The change that bounds each execution by the attempt timeout from when it starts,
/// enforced where it runs and cancelling it. Before it, a durable timer from when the
/// attempt was scheduled raced the call, and the attempt went on running.
const START_TO_CLOSE: Patch = Patch::Library(LibraryChange::StartToClose);

/// How the wait between attempts grows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same wait every time.
    Fixed(Duration),
    /// `first`, then `first + step`, `first + 2 × step`, ...
    Linear {
        /// The first wait.
        first: Duration,
        /// Added for each further attempt.
        step: Duration,
    },
    /// `first`, then `first × factor`, `first × factor²`, ...
    Exponential {
        /// The first wait.
        first: Duration,
        /// The growth factor (at least 1).
        factor: f64,
    },
}

type RetryIf = Arc<dyn Fn(&ActivityError) -> bool + Send + Sync>;

/// When and how often to retry a failed activity call.
///
/// ```
/// use std::time::Duration;
/// use durable_core::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(5, Duration::from_millis(100))
///     .max_interval(Duration::from_secs(10))
///     .attempt_timeout(Duration::from_secs(30))
///     .retry_if(|e| !e.message().contains("invalid"));
/// assert_eq!(policy.delay_after(3), Duration::from_millis(400));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
    max_interval: Option<Duration>,
    attempt_timeout: Option<Duration>,
    retry_if: Option<RetryIf>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_interval", &self.max_interval)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("retry_if", &self.retry_if.is_some())
            .finish()
    }
}

impl RetryPolicy {
    /// Up to `max_attempts` attempts with `backoff` between them. Every execution counts
    /// as an attempt, a redelivery after a crash too (as every execution is one in
    /// Temporal).
    pub fn new(max_attempts: u32, backoff: Backoff) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            backoff,
            max_interval: None,
            attempt_timeout: None,
            retry_if: None,
        }
    }

    /// Waits `interval` between attempts.
    pub fn fixed(max_attempts: u32, interval: Duration) -> Self {
        Self::new(max_attempts, Backoff::Fixed(interval))
    }

    /// Waits `first`, then one `step` longer each time.
    pub fn linear(max_attempts: u32, first: Duration, step: Duration) -> Self {
        Self::new(max_attempts, Backoff::Linear { first, step })
    }

    /// Waits `first`, then twice as long each time.
    pub fn exponential(max_attempts: u32, first: Duration) -> Self {
        Self::new(max_attempts, Backoff::Exponential { first, factor: 2.0 })
    }

    /// Caps every wait at `max`.
    pub fn max_interval(mut self, max: Duration) -> Self {
        self.max_interval = Some(max);
        self
    }

    /// Bounds each attempt's execution: one still running `timeout` after it started
    /// (Temporal's start-to-close timeout) is cancelled (its future dropped at its
    /// current `.await`) and fails as timed out ([`ActivityError::is_timeout`]), which
    /// the policy may retry. Time spent waiting for a slot
    /// ([`RuntimeBuilder::activity_concurrency`](crate::RuntimeBuilder::activity_concurrency))
    /// does not count. The limit is measured on the runtime's clock where the activity
    /// runs; an execution lost in a crash is run again with the limit counted afresh.
    /// `Duration::ZERO` is taken as it is: every attempt then times out as it starts.
    #[doc(alias = "start_to_close_timeout")]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Retries only errors for which `predicate` is true; others fail the call at once.
    /// (Errors another attempt cannot mend are never retried; see
    /// [`ActivityError::is_retryable`].)
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&ActivityError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::new(predicate));
        self
    }

    /// The wait after failed attempt `attempt` (1 for the first).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let n = attempt.saturating_sub(1);
        let delay = match self.backoff {
            Backoff::Fixed(d) => d,
            Backoff::Linear { first, step } => first + step.saturating_mul(n),
            Backoff::Exponential { first, factor } => {
                first.mul_f64(factor.max(1.0).powi(n.min(64) as i32).min(1e9))
            }
        };
        self.max_interval.map_or(delay, |max| delay.min(max))
    }

    /// Whether the policy retries after failed attempt `attempt`, whatever the error.
    fn allows_retry(&self, error: &ActivityError, attempt: u32) -> bool {
        attempt < self.max_attempts && self.retry_if.as_ref().is_none_or(|f| f(error))
    }
}

impl OrchestrationContext {
    /// Calls an activity and retries it by `policy` when it fails: the waits are durable
    /// timers, every attempt shares the call's idempotency key, and
    /// [`ActivityContext::attempt`](crate::ActivityContext::attempt) counts the
    /// executions: retries and redeliveries after a crash alike, each once.
    /// Returns the first success, or the last attempt's error. An error no attempt can
    /// mend (see [`ActivityError::is_retryable`]) is returned at once.
    #[track_caller]
    pub fn call_with_retry<A: Activity>(
        &self,
        activity: A,
        input: A::Input,
        policy: RetryPolicy,
    ) -> impl Future<Output = Result<A::Output, ActivityError>> + Send + use<A>
    where
        A::Input: Clone + Sync,
    {
        let caller: &'static Location<'static> = Location::caller();
        let ctx = self.clone();
        async move {
            // Histories written before the change raced each attempt against a durable
            // timer of their own: a marker says which way an instance goes, so they
            // replay alike.
            let start_to_close = policy
                .attempt_timeout
                .filter(|_| ctx.patched_at(START_TO_CLOSE, caller));
            let mut attempt = Attempt {
                timeout: start_to_close,
                ..Attempt::FIRST
            };
            loop {
                let call = ctx.call_attempt(activity, input.clone(), attempt, caller);
                attempt.key_seq.get_or_insert(call.seq());
                let result = match policy.attempt_timeout {
                    Some(limit) if start_to_close.is_none() => {
                        let timer = ctx.timer_at(caller, limit);
                        match ctx.select2(call, timer).await {
                            Either::Left(result) => result,
                            Either::Right(()) => Err(ActivityError::timed_out(
                                A::NAME,
                                attempt.number,
                                Timeout { after: limit },
                            )),
                        }
                    }
                    _ => call.await,
                };
                let error = match result {
                    Ok(output) => return Ok(output),
                    Err(error) => error,
                };
                // The executions so far: the failed one's number, which counts the
                // redeliveries before it. (Histories written before the change counted
                // on from the last retry; they replay alike.)
                let executed = if error.attempt() > attempt.number
                    && ctx.patched_at(EVERY_EXECUTION_COUNTED, caller)
                {
                    error.attempt()
                } else {
                    attempt.number
                };
                // An error no attempt can mend is not retried. Histories written before
                // errors were told apart retried every error: a marker in the history says
                // which rule an instance follows, so they replay alike.
                let retry = policy.allows_retry(&error, executed)
                    && (error.is_retryable() || !ctx.patched_at(NON_RETRYABLE_ERRORS, caller));
                if !retry {
                    return Err(error);
                }
                ctx.timer_at(caller, policy.delay_after(executed)).await;
                attempt.number = executed + 1;
            }
        }
    }
}
