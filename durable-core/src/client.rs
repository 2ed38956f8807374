//! The client: start instances, read their status, wait for their output.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use durable_store::{Commit, Event, Failure, InstanceRecord, Status, WorkItem};

use crate::Error;
use crate::handle::Orchestrator;
use crate::payload;
use crate::runtime::{Shared, now_ms};

/// The longest instance id accepted, in bytes.
pub const MAX_INSTANCE_ID_LEN: usize = 256;

/// Starts instances and reads their state. Cheap to clone; get one from
/// [`Runtime::client`](crate::Runtime::client).
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

/// The state of an instance, with its output decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceStatus<T> {
    /// Created; its first turn has not run yet.
    Pending,
    /// Started and not finished.
    Running,
    /// Finished with this output.
    Completed(T),
    /// Finished with a failure: the orchestrator returned `Err` or panicked, or a stored
    /// payload no longer decodes.
    Failed(Failure),
    /// Stopped because its code does not replay its history or is not registered; resumes
    /// when a runtime with fixed code starts on the store.
    Stalled(Failure),
}

impl<T> InstanceStatus<T> {
    /// Whether the instance has finished or stalled (nothing will happen until a restart).
    pub fn is_settled(&self) -> bool {
        !matches!(self, InstanceStatus::Pending | InstanceStatus::Running)
    }
}

impl Client {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Starts orchestrator `orchestrator` as instance `id` with `input`. Returns once the
    /// instance is durably recorded: from then on it runs to completion, across crashes.
    ///
    /// Starting an id that already exists (for the same orchestrator) starts nothing and
    /// returns the existing instance; [`Instance::is_new`] tells which happened.
    pub async fn start<O: Orchestrator>(
        &self,
        orchestrator: O,
        id: impl Into<String>,
        input: O::Input,
    ) -> Result<Instance<O>, Error> {
        let _ = orchestrator;
        let id = id.into();
        check_instance_id(&id)?;
        if !self.shared.registry.orchestrators.contains_key(O::NAME) {
            return Err(Error::UnregisteredOrchestrator(O::NAME.to_string()));
        }
        let input = payload::encode(&input)?;
        let _guard = StartGuard::acquire(&self.shared, &id).await;
        if let Some(existing) = self.shared.store.instance(&id)? {
            if existing.orchestrator != O::NAME {
                return Err(Error::InstanceConflict {
                    id,
                    existing: existing.orchestrator,
                    requested: O::NAME.to_string(),
                });
            }
            return Ok(Instance::new(self.clone(), id, false));
        }
        let now = now_ms();
        let started = Event::Started {
            orchestrator: O::NAME.to_string(),
            input: input.clone(),
        };
        let message_id = self.shared.work_id();
        let record = InstanceRecord {
            orchestrator: O::NAME.to_string(),
            input,
            status: Status::Pending,
            created_ms: now,
            updated_ms: now,
            history_len: 0,
        };
        self.shared
            .commits
            .commit(Commit {
                instances: vec![(id.clone(), record)],
                enqueued: vec![(
                    message_id,
                    WorkItem::Message {
                        instance: id.clone(),
                        event: started.clone(),
                    },
                )],
                ..Commit::default()
            })
            .await?;
        self.shared.deliver(id.clone(), message_id, started);
        Ok(Instance::new(self.clone(), id, true))
    }

    /// A typed handle on an existing instance of `orchestrator` (not checked until used).
    pub fn instance<O: Orchestrator>(&self, orchestrator: O, id: impl Into<String>) -> Instance<O> {
        let _ = orchestrator;
        Instance::new(self.clone(), id.into(), false)
    }

    /// The stored record of an instance, with its payloads still encoded.
    pub fn record(&self, id: &str) -> Result<Option<InstanceRecord>, Error> {
        Ok(self.shared.store.instance(id)?)
    }

    fn status_of<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<InstanceStatus<T>, Error> {
        let record = self
            .record(id)?
            .ok_or_else(|| Error::InstanceNotFound(id.to_string()))?;
        Ok(match record.status {
            Status::Pending => InstanceStatus::Pending,
            Status::Running => InstanceStatus::Running,
            Status::Completed { output } => InstanceStatus::Completed(payload::decode(&output)?),
            Status::Failed { failure } => InstanceStatus::Failed(failure),
            Status::Stalled { failure } => InstanceStatus::Stalled(failure),
        })
    }
}

/// A typed handle on one instance of orchestrator `O`.
#[derive(Debug)]
pub struct Instance<O> {
    client: Client,
    id: String,
    new: bool,
    _orchestrator: PhantomData<fn() -> O>,
}

impl<O: Orchestrator> Instance<O> {
    fn new(client: Client, id: String, new: bool) -> Self {
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

    /// The instance's current state.
    pub async fn status(&self) -> Result<InstanceStatus<O::Output>, Error> {
        self.client.status_of(&self.id)
    }

    /// Waits until the instance finishes and returns its output; fails with
    /// [`Error::Failed`] if it failed, [`Error::Stalled`] if it stalled, and
    /// [`Error::Timeout`] if it has not finished within `timeout`.
    pub async fn wait(&self, timeout: Duration) -> Result<O::Output, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Watch before reading, so a finish between the two is not missed.
            let finished = self.client.shared.watch(&self.id);
            match self.status().await? {
                InstanceStatus::Completed(output) => return Ok(output),
                InstanceStatus::Failed(failure) => {
                    return Err(Error::Failed {
                        id: self.id.clone(),
                        failure,
                    });
                }
                InstanceStatus::Stalled(failure) => {
                    return Err(Error::Stalled {
                        id: self.id.clone(),
                        failure,
                    });
                }
                InstanceStatus::Pending | InstanceStatus::Running => {}
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return Err(Error::Timeout {
                    id: self.id.clone(),
                    timeout,
                });
            }
        }
    }
}

fn check_instance_id(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_INSTANCE_ID_LEN {
        "it is longer than 256 bytes"
    } else if id.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidInstanceId {
        id: id.to_string(),
        reason,
    })
}

/// Holds an instance id in the set of ids being created, so that concurrent starts of one
/// id run one after the other and the later ones find the instance.
struct StartGuard<'a> {
    shared: &'a Shared,
    id: String,
}

impl<'a> StartGuard<'a> {
    async fn acquire(shared: &'a Shared, id: &str) -> Self {
        loop {
            let notified = shared.started.notified();
            if shared
                .starting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string())
            {
                return Self {
                    shared,
                    id: id.to_string(),
                };
            }
            notified.await;
        }
    }
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.shared.started.notify_waiters();
    }
}
