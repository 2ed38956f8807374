//! Retry policies for activity calls. The waits between attempts are durable timers, so a
//! retry schedule survives restarts; every attempt shares the call's idempotency key.

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::OrchestrationContext;
use crate::error::{ActivityError, Timeout};
use crate::handle::Activity;

/// The change that stopped retrying errors no attempt can mend, as recorded in histories.
const NON_RETRYABLE_ERRORS: &str = "durable:non-retryable-errors";

/// How the wait between attempts grows.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    /// Up to `max_attempts` attempts with `backoff` between them.
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

    /// Gives up on an attempt that has not finished after `timeout` (a durable timer) and
    /// counts it as failed.
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
    /// [`ActivityContext::attempt`](crate::ActivityContext::attempt) counts the attempts.
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
            let mut key_seq = None;
            let mut attempt = 1;
            loop {
                let call = ctx.call_attempt(activity, input.clone(), key_seq, attempt, caller);
                key_seq.get_or_insert(call.seq());
                let result = match policy.attempt_timeout {
                    None => call.await,
                    Some(limit) => {
                        let timer = ctx.timer_at(caller, limit);
                        match ctx.select2(call, timer).await {
                            crate::Either::Left(result) => result,
                            crate::Either::Right(()) => Err(ActivityError::timed_out(
                                A::NAME,
                                attempt,
                                Timeout { after: limit },
                            )),
                        }
                    }
                };
                match result {
                    Ok(output) => return Ok(output),
                    // An error no attempt can mend is not retried. Histories written
                    // before errors were told apart retried every error: a marker in the
                    // history says which rule an instance follows, so they replay alike.
                    Err(error)
                        if policy.allows_retry(&error, attempt)
                            && (error.is_retryable()
                                || !ctx.patched_at(NON_RETRYABLE_ERRORS, caller)) =>
                    {
                        ctx.timer_at(caller, policy.delay_after(attempt)).await;
                        attempt += 1;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    }
}
