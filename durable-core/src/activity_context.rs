//! [`ActivityContext`]: what an activity gets besides its input.

use std::sync::Arc;

use durable_store::{Commit, Incarnation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::payload;
use crate::runtime::engine::Engine;

/// The context of one activity execution: who called it, which attempt this is, the
/// application state registered on the runtime, and a durable progress checkpoint.
#[derive(Clone)]
pub struct ActivityContext {
    instance: Arc<str>,
    activity: &'static str,
    key: Arc<str>,
    attempt: u32,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for ActivityContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityContext")
            .field("instance", &self.instance)
            .field("activity", &self.activity)
            .field("key", &self.key)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl ActivityContext {
    pub(crate) fn new(
        instance: &str,
        key: String,
        activity: &'static str,
        attempt: u32,
        engine: Arc<Engine>,
    ) -> Self {
        Self {
            instance: instance.into(),
            activity,
            key: key.into(),
            attempt,
            engine,
        }
    }

    /// A client on this activity's runtime (the built-in activities of schedules start
    /// and read instances through it).
    #[cfg_attr(not(feature = "schedules"), allow(dead_code))]
    pub(crate) fn client(&self) -> crate::client::Client {
        crate::client::Client::new(self.engine.clone())
    }

    /// The id of the orchestration instance that called this activity.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// The activity's registered name.
    pub fn activity_name(&self) -> &'static str {
        self.activity
    }

    /// A key unique to this activity call, the same across retries and redeliveries:
    /// write effects under it to make them idempotent. It reads
    /// `{instance}/{incarnation as hex}.{generation}/{step}`: a new run of the instance
    /// id (after a purge or a restart) gets keys of its own.
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// Which execution of this call this is: 1 the first time, then one more for each
    /// execution before it, whether a retry of `ctx.call_with_retry` or a redelivery after
    /// a crash or restart. Each execution counts once. A call still waiting for a slot
    /// ([`RuntimeBuilder::activity_concurrency`](crate::RuntimeBuilder::activity_concurrency))
    /// at a graceful [`Runtime::shutdown`](crate::Runtime::shutdown) never executed and is
    /// not counted; one lost in a crash is counted whether or not it had started (nothing
    /// durable tells).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The application state of type `T` registered with [`RuntimeBuilder::state`].
    ///
    /// # Panics
    ///
    /// When no state of type `T` was registered: a wiring mistake, reported to the
    /// orchestrator as a panicked activity with this message.
    ///
    /// [`RuntimeBuilder::state`]: crate::RuntimeBuilder::state
    pub fn state<T: Send + Sync + 'static>(&self) -> &T {
        match self.engine.registry().state::<T>() {
            Some(state) => state,
            None => panic!(
                "no application state of type `{}` is registered; add it with `RuntimeBuilder::state`",
                std::any::type_name::<T>()
            ),
        }
    }

    /// Durably saves how far this call has got (the seed's "last processed id"). If the
    /// activity is run again after a crash, [`progress`](Self::progress) returns it so
    /// the work resumes there. Returns once the checkpoint is on disk. The checkpoint is
    /// removed when the activity's result is recorded.
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] if `progress` does not encode, [`Error::PayloadTooLarge`] if it
    /// is over [`RuntimeBuilder::max_payload_bytes`](crate::RuntimeBuilder::max_payload_bytes),
    /// [`Error::Store`] if the store refuses the write, [`Error::ShutDown`] once the
    /// runtime has stopped.
    pub async fn save_progress<T: Serialize>(&self, progress: &T) -> Result<(), Error> {
        let bytes = payload::encode(progress)?;
        let what = || format!("the progress of activity `{}`", self.activity);
        self.engine.check_payload(what, &bytes)?;
        self.engine
            .commit(Commit {
                progress: vec![(self.key.to_string(), Some(bytes))],
                ..Commit::default()
            })
            .await
    }

    /// The last checkpoint saved by this call (in this or an earlier attempt), if any.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read, [`Error::Payload`] if the checkpoint
    /// does not decode as `T`.
    pub fn progress<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        match self.engine.store().progress(&self.key)? {
            Some(bytes) => Ok(Some(payload::decode(&bytes)?)),
            None => Ok(None),
        }
    }
}

/// `{instance}/{incarnation as hex}.{generation}/{step}`: unique per call, the same for
/// its retries and redeliveries.
pub(crate) fn idempotency_key(
    instance: &str,
    incarnation: Incarnation,
    generation: u32,
    key_seq: u64,
) -> String {
    format!("{instance}/{incarnation:x}.{generation}/{key_seq}")
}
