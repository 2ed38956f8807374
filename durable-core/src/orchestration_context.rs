//! [`OrchestrationContext`]: what an orchestrator uses to issue durable operations.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use durable_store::Site;

use crate::error::ActivityError;
use crate::handle::Activity;
use crate::payload;
use crate::registry::decode_failure;
use crate::replay::{ReplayState, lock};

/// The handle an orchestrator gets to issue durable operations.
///
/// Every operation is recorded in the instance's history with a step number and the
/// source line of the call; after a restart the orchestrator is replayed and each
/// operation's result is served from the history instead of running it again.
#[derive(Clone)]
pub struct OrchestrationContext {
    instance: Arc<str>,
    state: Arc<Mutex<ReplayState>>,
}

impl std::fmt::Debug for OrchestrationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestrationContext")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl OrchestrationContext {
    pub(crate) fn new(instance: String, state: Arc<Mutex<ReplayState>>) -> Self {
        Self {
            instance: instance.into(),
            state,
        }
    }

    /// The id of the running instance.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Whether the orchestrator is re-running steps its history already holds (after a
    /// restart or a cache eviction). Use it to keep logs from repeating.
    pub fn is_replaying(&self) -> bool {
        lock(&self.state).is_replaying()
    }

    /// Calls an activity by its handle. The call is recorded when it is made; await the
    /// returned future for the activity's output, or an [`ActivityError`] if it returned
    /// `Err` or panicked.
    ///
    /// ```
    /// use durable_core::{activity, orchestrator, ActivityContext, OrchestrationContext};
    ///
    /// #[activity]
    /// async fn reserve(_ctx: ActivityContext, sku: String) -> Result<u32, String> {
    ///     Ok(3)
    /// }
    ///
    /// #[orchestrator]
    /// async fn restock(ctx: OrchestrationContext, sku: String) -> Result<u32, String> {
    ///     match ctx.call(reserve, sku).await {
    ///         Ok(count) => Ok(count),
    ///         Err(e) if e.is_panic() => Err(format!("bug in `{}`: {}", e.activity(), e.message())),
    ///         Err(e) => Err(e.into()),
    ///     }
    /// }
    /// ```
    #[track_caller]
    pub fn call<A: Activity>(&self, activity: A, input: A::Input) -> ActivityCall<A::Output> {
        let _ = activity;
        let caller = Location::caller();
        let mut state = lock(&self.state);
        let site = Site {
            function: state.orchestrator.clone(),
            file: caller.file().to_string(),
            line: caller.line(),
            line_offset: i64::from(caller.line()) - i64::from(state.fn_line),
        };
        let input = match payload::encode(&input) {
            Ok(bytes) => bytes,
            Err(e) => {
                state.fail_decode(decode_failure(e));
                Vec::new()
            }
        };
        let seq = state.schedule_activity(A::NAME, input, site);
        ActivityCall {
            state: self.state.clone(),
            seq,
            _output: PhantomData,
        }
    }
}

/// The future of an activity call: resolves once the activity's result is in the history.
#[must_use = "an activity call does nothing for the orchestrator unless awaited"]
pub struct ActivityCall<T> {
    state: Arc<Mutex<ReplayState>>,
    seq: u64,
    _output: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ActivityCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityCall")
            .field("seq", &self.seq)
            .finish()
    }
}

impl<T: serde::de::DeserializeOwned> Future for ActivityCall<T> {
    type Output = Result<T, ActivityError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.state);
        match state.take_result(self.seq) {
            None => Poll::Pending,
            Some(Err(error)) => Poll::Ready(Err(error)),
            Some(Ok(bytes)) => match payload::decode(&bytes) {
                Ok(output) => Poll::Ready(Ok(output)),
                Err(e) => {
                    state.fail_decode(decode_failure(e));
                    Poll::Pending
                }
            },
        }
    }
}
