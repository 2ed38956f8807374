//! The typed handle on one instance, [`Instance<O>`], and the status it reads,
//! [`InstanceStatus`].

use std::marker::PhantomData;
use std::time::Duration;

use durable_store::Failure;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{Client, SetAsideEvent};
use crate::error::Error;
use crate::external_event::AsEventName;
use crate::handle::Orchestrator;
use crate::payload;

/// How often [`Instance::wait`] reads the status of an instance on a shared store.
const SHARED_STORE_POLL: Duration = Duration::from_millis(100);

/// How often [`Instance::wait`] reads the status of an instance on a store one process
/// holds, where another runtime on the same handle may run it.
const OTHER_WORKER_POLL: Duration = Duration::from_secs(1);
use crate::position::Position;
use crate::runtime::entities::ENTITY_MARKER;

/// The state of an instance, with its output decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceStatus<T> {
    /// Created; its first turn has not run yet.
    Pending,
    /// Started and not finished.
    Running,
    /// Finished with this output.
    Completed(T),
    /// Finished with a failure: the orchestrator returned `Err` or panicked.
    Failed(Failure),
    /// Stopped because its code does not replay its history, a stored payload no longer
    /// decodes as its type, or its code is not registered; resumes, where it stopped,
    /// when a runtime with fixed code starts on the store.
    Stalled(Failure),
    /// Stopped by a client, with the reason given.
    Terminated(String),
    /// Paused by a client, with the reason given; [`Instance::resume`] lets it go on.
    Suspended(String),
    /// Parked by the runtime, with the reason it gave: its work crashed the worker at
    /// too many recoveries in a row
    /// ([`StartOptions::max_recoveries`](crate::StartOptions::max_recoveries)). Its work
    /// is kept, not run; [`Instance::resume`] lets it go on, with a new count.
    DeadLettered(String),
}

impl<T> InstanceStatus<T> {
    /// Whether nothing will happen to the instance until a client or a restart acts:
    /// finished, stalled, terminated, suspended or dead-lettered.
    pub fn is_settled(&self) -> bool {
        !matches!(self, InstanceStatus::Pending | InstanceStatus::Running)
    }
}

/// A typed handle on one instance of orchestrator `O`: its output decodes as
/// `O::Output`. Get one from [`Client::start`] or [`Client::instance`].
#[derive(Debug)]
pub struct Instance<O> {
    client: Client,
    id: String,
    new: bool,
    _orchestrator: PhantomData<fn() -> O>,
}

impl<O: Orchestrator> Instance<O> {
    pub(crate) fn new(client: Client, id: String, new: bool) -> Self {
        Self {
            client,
            id,
            new,
            _orchestrator: PhantomData,
        }
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the [`Client::start`] call that returned this handle created the instance
    /// (false when it already existed).
    pub fn is_new(&self) -> bool {
        self.new
    }

    /// The instance's current state. Where it waits or stopped: [`position`](Self::position).
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no such instance; [`Error::Payload`] if its
    /// output does not decode as `O::Output`; [`Error::Store`] if its record cannot be
    /// read.
    pub async fn status(&self) -> Result<InstanceStatus<O::Output>, Error> {
        self.client.status_of(&self.id).await
    }

    /// Where the instance stands in its code: the steps it awaits and the last one it
    /// issued, with their await sites (see [`Client::position`]).
    ///
    /// # Errors
    ///
    /// As [`Client::position`].
    pub async fn position(&self) -> Result<Position, Error> {
        self.client.position(&self.id).await
    }

    /// The custom status the orchestrator last set with `ctx.set_custom_status`.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no such instance; [`Error::Payload`] if the
    /// custom status does not decode as `T`; [`Error::Store`] if its record cannot be
    /// read.
    pub async fn custom_status<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        match self.client.existing(&self.id).await?.custom_status {
            Some(bytes) => Ok(Some(payload::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Raises external event `name` to this instance (see [`Client::raise_event`]).
    ///
    /// # Errors
    ///
    /// As [`Client::raise_event`].
    pub async fn raise_event<T: Serialize>(
        &self,
        name: impl AsEventName<T>,
        payload: &T,
    ) -> Result<(), Error> {
        self.client.raise_event(&self.id, name, payload).await
    }

    /// The events this instance set aside (see [`Client::set_aside_events`]).
    ///
    /// # Errors
    ///
    /// As [`Client::set_aside_events`].
    pub async fn set_aside_events(&self) -> Result<Vec<SetAsideEvent>, Error> {
        self.client.set_aside_events(&self.id).await
    }

    /// Terminates this instance (see [`Client::terminate`]).
    ///
    /// # Errors
    ///
    /// As [`Client::terminate`].
    pub async fn terminate(&self, reason: &str) -> Result<(), Error> {
        self.client.terminate(&self.id, reason).await
    }

    /// Suspends this instance (see [`Client::suspend`]).
    ///
    /// # Errors
    ///
    /// As [`Client::suspend`].
    pub async fn suspend(&self, reason: &str) -> Result<(), Error> {
        self.client.suspend(&self.id, reason).await
    }

    /// Resumes this instance (see [`Client::resume`]).
    ///
    /// # Errors
    ///
    /// As [`Client::resume`].
    pub async fn resume(&self) -> Result<(), Error> {
        self.client.resume(&self.id).await
    }

    /// Waits until the instance finishes and returns its output.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`] if it failed, [`Error::Stalled`] if it stalled,
    /// [`Error::Terminated`] if it was terminated, and [`Error::Timeout`] if it has not
    /// finished within `timeout`; [`Error::IsAnEntity`] if the id is an entity's; as
    /// [`status`](Self::status) if its state cannot be read.
    /// If the store starts refusing every write (a failed fsync; see
    /// [`StoreError::Poisoned`](crate::StoreError::Poisoned)), the runtime halts, and for
    /// an instance not finished by then this returns that error ([`Error::Store`]) at
    /// once: restart the process to go on.
    ///
    /// The instance may run on another worker (another process, on a store others share:
    /// [`Store::is_shared`](crate::Store::is_shared)): while this runtime does not hold
    /// it, its status is read again every 100 ms on a shared store, every second
    /// otherwise.
    pub async fn wait(&self, timeout: Duration) -> Result<O::Output, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        // An entity runs here as an instance does, and never finishes: refused at once
        // (only ids of the entity form pay the read).
        if self.id.starts_with(ENTITY_MARKER) {
            self.status().await?;
        }
        let id = || self.id.clone();
        let engine = &self.client.engine;
        // The record the instance finished or stalled with here, as its watch told it.
        let mut told = None;
        loop {
            // Watch before reading, so a finish between the two is not missed.
            let finished = engine.watch(&self.id);
            let halted = engine.on_halt();
            let stopped = engine.halted().cloned();
            // An instance running here wakes the watch when it finishes or stalls, with
            // its record: the store is read only for one that runs elsewhere, or not yet.
            let status = match told.take() {
                Some(record) => Some(Client::status_in(record)?),
                // A halted runtime may have written a finish it could not confirm.
                None if stopped.is_none() && engine.runs_here(&self.id) => None,
                None => Some(self.status().await?),
            };
            match status {
                Some(InstanceStatus::Completed(output)) => return Ok(output),
                Some(InstanceStatus::Failed(failure)) => {
                    return Err(Error::Failed { id: id(), failure });
                }
                Some(InstanceStatus::Stalled(failure)) => {
                    return Err(Error::Stalled { id: id(), failure });
                }
                Some(InstanceStatus::Terminated(reason)) => {
                    return Err(Error::Terminated { id: id(), reason });
                }
                _ => {
                    // A halted runtime finishes nothing more.
                    if let Some(e) = stopped {
                        return Err(Error::Store(e));
                    }
                }
            }
            // An instance this worker holds wakes the watch when it finishes. Another
            // worker (another process, on a shared store) may run it instead: its finish
            // wakes no one here, so the status is read again now and then.
            let poll = if engine.holds(&self.id) {
                Duration::MAX
            } else if engine.is_shared() {
                SHARED_STORE_POLL
            } else {
                OTHER_WORKER_POLL
            };
            let woken = async {
                tokio::select! {
                    record = finished => told = record.ok().flatten(),
                    () = halted => {}
                    () = tokio::time::sleep(poll) => {}
                }
            };
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Err(Error::Timeout { id: id(), timeout });
            }
        }
    }
}
