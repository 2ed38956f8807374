//! The client: start instances, read their status, wait for their output, and manage
//! them (events, terminate, suspend, resume, purge, restart, list).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use durable_store::{Commit, Event, Failure, Incarnation, InstanceRecord, Status};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::external_event::AsEventName;
use crate::handle::Orchestrator;
use crate::payload;
use crate::position::Position;
use crate::runtime::engine::Engine;

/// A raised event an instance set aside: its payload did not decode as the type the
/// orchestrator waits for. See [`Client::set_aside_events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAsideEvent {
    /// The event's name.
    pub name: String,
    /// Which event of that name the generation received, 0 for the first.
    pub index: u32,
    /// The payload as raised (JSON; [`payload_json`](Self::payload_json) reads it).
    pub payload: Vec<u8>,
    /// Why it was set aside: the decode error, naming the type the wait expects.
    pub reason: String,
}

impl SetAsideEvent {
    /// The payload as a JSON value.
    ///
    /// # Errors
    ///
    /// [`crate::PayloadError`] if the payload is not JSON.
    pub fn payload_json(&self) -> Result<serde_json::Value, crate::PayloadError> {
        payload::to_json(&self.payload)
    }
}

/// The longest instance id accepted, in bytes.
pub const MAX_INSTANCE_ID_LEN: usize = 256;

/// The first character of the ids the runtime generates for sub-orchestrations started
/// without an id (`ctx.sub_orchestration`), which read
/// `~{parent}~{incarnation as hex}.{generation}.{step}`. So that no id a user chooses can
/// clash with one, [`Client::start`] and `ctx.sub_orchestration_with_id` refuse ids of
/// that form (starting with `~` and ending with `~`, hex digits, `.`, digits, `.`,
/// digits). Other ids starting with `~` are accepted: an id derived from a generated
/// one, like `format!("{}-audit", ctx.instance_id())` in a generated child, is never of
/// that form.
pub const GENERATED_ID_PREFIX: char = '~';

/// Starts instances and reads their state. Cheap to clone; get one from
/// [`Runtime::client`](crate::Runtime::client).
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) shared: Arc<Engine>,
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
}

impl<T> InstanceStatus<T> {
    /// Whether nothing will happen to the instance until a client or a restart acts:
    /// finished, stalled, terminated or suspended.
    pub fn is_settled(&self) -> bool {
        !matches!(self, InstanceStatus::Pending | InstanceStatus::Running)
    }
}

impl Client {
    pub(crate) fn new(shared: Arc<Engine>) -> Self {
        Self { shared }
    }

    /// Starts orchestrator `orchestrator` as instance `id` with `input`. Returns once the
    /// instance is durably recorded: from then on it runs to completion, across crashes.
    ///
    /// Starting an id that already exists (for the same orchestrator) starts nothing and
    /// returns the existing instance; [`Instance::is_new`] tells which happened. A new
    /// instance under the id of a purged one is a run of its own: nothing addressed to the
    /// purged run (a timer, an activity result, a child's completion) reaches it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInstanceId`] for an empty id, one longer than
    /// [`MAX_INSTANCE_ID_LEN`] bytes, one with control characters, or one of the form of
    /// the ids generated for sub-orchestrations (see [`GENERATED_ID_PREFIX`]);
    /// [`Error::UnregisteredOrchestrator`],
    /// [`Error::InstanceConflict`] if the id runs another orchestrator,
    /// [`Error::PayloadTooLarge`], or a store error.
    pub async fn start<O: Orchestrator>(
        &self,
        orchestrator: O,
        id: impl Into<String>,
        input: O::Input,
    ) -> Result<Instance<O>, Error> {
        let _ = orchestrator;
        let id = id.into();
        check_user_instance_id(&id)?;
        if self
            .shared
            .registry()
            .orchestrator(O::NAME, O::VERSION)
            .is_none()
        {
            return Err(Error::UnregisteredOrchestrator(O::NAME.to_string()));
        }
        let input = payload::encode(&input)?;
        let _guard = StartGuard::acquire(&self.shared, &id).await;
        if let Some(existing) = self.shared.store().instance(&id)? {
            if existing.orchestrator != O::NAME {
                return Err(Error::InstanceConflict {
                    id,
                    existing: existing.orchestrator,
                    requested: O::NAME.to_string(),
                });
            }
            return Ok(Instance::new(self.clone(), id, false));
        }
        self.shared.check_payload(
            || format!("the input of orchestrator `{}`", O::NAME),
            &input,
        )?;
        let record = InstanceRecord::pending(
            O::NAME.to_string(),
            O::VERSION,
            input,
            self.shared.now_ms(),
            Engine::new_incarnation(None),
            None,
        );
        self.begin(&id, record, Commit::default()).await?;
        Ok(Instance::new(self.clone(), id, true))
    }

    /// Writes `record` (with a `Started` event for its generation) in `commit`, then hands
    /// the event to the runtime.
    async fn begin(
        &self,
        id: &str,
        record: InstanceRecord,
        mut commit: Commit,
    ) -> Result<(), Error> {
        let run = (record.incarnation, Some(record.generation));
        let started = Event::Started {
            orchestrator: record.orchestrator.clone(),
            input: record.input.clone(),
        };
        commit.instances.push((id.to_string(), record));
        self.send(id, run, started, commit).await
    }

    /// Commits `event` as a message for run `run` (incarnation, and generation or any) of
    /// `id`, with whatever else `commit` holds, then hands it to the runtime.
    async fn send(
        &self,
        id: &str,
        run: (Incarnation, Option<u32>),
        event: Event,
        commit: Commit,
    ) -> Result<(), Error> {
        self.shared
            .send_message(id, run.into(), event, commit)
            .await
    }

    /// A typed handle on an existing instance of `orchestrator` (not checked until used).
    pub fn instance<O: Orchestrator>(&self, orchestrator: O, id: impl Into<String>) -> Instance<O> {
        let _ = orchestrator;
        Instance::new(self.clone(), id.into(), false)
    }

    /// The stored record of an instance, with its payloads still encoded.
    pub fn record(&self, id: &str) -> Result<Option<InstanceRecord>, Error> {
        Ok(self.shared.store().instance(id)?)
    }

    fn existing(&self, id: &str) -> Result<InstanceRecord, Error> {
        self.record(id)?
            .ok_or_else(|| Error::InstanceNotFound(id.to_string()))
    }

    /// Where instance `id` stands in its code: the steps whose results it has not had
    /// (a step it gave up on, like the timer of a `timeout` that lost, stays listed until
    /// it fires) and the last one it issued, each with its step number and await site.
    /// For a stalled, failed or terminated instance, where it stopped.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; a store error if its
    /// history cannot be read.
    pub fn position(&self, id: &str) -> Result<Position, Error> {
        self.existing(id)?;
        Ok(Position::of(&self.shared.store().history(id)?))
    }

    fn status_of<T: DeserializeOwned>(&self, id: &str) -> Result<InstanceStatus<T>, Error> {
        Ok(match self.existing(id)?.status {
            Status::Pending => InstanceStatus::Pending,
            Status::Running => InstanceStatus::Running,
            Status::Completed { output } => InstanceStatus::Completed(payload::decode(&output)?),
            Status::Failed { failure } => InstanceStatus::Failed(failure),
            Status::Stalled { failure } => InstanceStatus::Stalled(failure),
            Status::Terminated { reason } => InstanceStatus::Terminated(reason),
            Status::Suspended { reason } => InstanceStatus::Suspended(reason),
        })
    }

    /// Raises external event `name` with `payload` to instance `id`; the orchestrator
    /// receives it with `ctx.wait_event(name)`, now or when it next waits. Events the
    /// instance has not taken when it continues as new are carried to the next generation.
    ///
    /// Name the event with the [`EventName<T>`](crate::EventName) the orchestrator waits
    /// on, and a payload of another type does not compile. Raised by a plain name with a
    /// payload the wait cannot decode, the event is set aside (see
    /// [`set_aside_events`](Self::set_aside_events)) and the instance goes on waiting.
    ///
    /// Each call raises one event: a call that returned an error may still have been
    /// written (a failed fsync after the write), and calling again then raises a second.
    /// Where that matters, put an id in the payload and let the orchestrator skip ids it
    /// has seen.
    pub async fn raise_event<T: Serialize>(
        &self,
        id: &str,
        name: impl AsEventName<T>,
        payload: &T,
    ) -> Result<(), Error> {
        let name = name.event_name();
        let record = self.existing(id)?;
        refuse_if_finished(id, &record, "raise an event to")?;
        let payload = payload::encode(payload)?;
        self.shared
            .check_payload(|| format!("the payload of event `{name}`"), &payload)?;
        let event = Event::EventRaised {
            name: name.to_string(),
            payload,
        };
        let run = (record.incarnation, None);
        self.send(id, run, event, Commit::default()).await
    }

    /// The events instance `id` set aside in its current generation, oldest first: raised
    /// events whose payload did not decode as the type its orchestrator waits for. Each is
    /// also in the history, as `Event::EventSetAside`.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::Store`] if the
    /// history cannot be read.
    pub fn set_aside_events(&self, id: &str) -> Result<Vec<SetAsideEvent>, Error> {
        self.existing(id)?;
        let history = self.shared.store().history(id)?;
        Ok(history
            .into_iter()
            .filter_map(|event| match event {
                Event::EventSetAside {
                    name,
                    index,
                    payload,
                    reason,
                } => Some(SetAsideEvent {
                    name,
                    index,
                    payload,
                    reason,
                }),
                _ => None,
            })
            .collect())
    }

    /// Stops instance `id` before it finishes; its status becomes terminated with
    /// `reason`. Activities already running finish, their results ignored.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), Error> {
        let record = self.existing(id)?;
        refuse_if_finished(id, &record, "terminate")?;
        let what = || "the terminate reason".to_string();
        self.shared.check_payload(what, reason.as_bytes())?;
        let event = Event::TerminateRequested {
            reason: reason.to_string(),
        };
        let run = (record.incarnation, None);
        self.send(id, run, event, Commit::default()).await
    }

    /// Pauses instance `id`: events are kept, and applied once it is resumed.
    pub async fn suspend(&self, id: &str, reason: &str) -> Result<(), Error> {
        let record = self.existing(id)?;
        refuse_if_finished(id, &record, "suspend")?;
        if matches!(record.status, Status::Suspended { .. }) {
            return Err(invalid_state(
                id,
                "suspend",
                &record,
                "it is suspended already",
            ));
        }
        let what = || "the suspend reason".to_string();
        self.shared.check_payload(what, reason.as_bytes())?;
        let event = Event::SuspendRequested {
            reason: reason.to_string(),
        };
        let run = (record.incarnation, None);
        self.send(id, run, event, Commit::default()).await
    }

    /// Lets a suspended instance go on.
    pub async fn resume(&self, id: &str) -> Result<(), Error> {
        let record = self.existing(id)?;
        if !matches!(record.status, Status::Suspended { .. }) {
            return Err(invalid_state(
                id,
                "resume",
                &record,
                "only a suspended instance can be resumed",
            ));
        }
        let run = (record.incarnation, None);
        self.send(id, run, Event::ResumeRequested, Commit::default())
            .await
    }

    /// Removes a finished (completed, failed or terminated) instance and its history.
    pub async fn purge(&self, id: &str) -> Result<(), Error> {
        let record = self.existing(id)?;
        if !record.status.is_terminal() {
            return Err(invalid_state(
                id,
                "purge",
                &record,
                "terminate it first, or wait until it finishes",
            ));
        }
        let mut commit = Commit::default();
        purge_into(&mut commit, id, &record);
        self.shared.commit(commit).await?;
        self.shared.forget(id);
        Ok(())
    }

    /// Removes every finished instance that `filter` matches, in one commit; returns how
    /// many.
    pub async fn purge_where(&self, filter: &PurgeFilter) -> Result<usize, Error> {
        let mut commit = Commit::default();
        let mut purged = Vec::new();
        for (id, record) in self.shared.store().instances()? {
            if record.status.is_terminal() && filter.matches(&record) {
                purge_into(&mut commit, &id, &record);
                purged.push(id);
            }
        }
        if !purged.is_empty() {
            self.shared.commit(commit).await?;
        }
        for id in &purged {
            self.shared.forget(id);
        }
        Ok(purged.len())
    }

    /// Runs a failed or terminated instance again from its original input, under the
    /// same id and with a fresh history, as a new run of the id: nothing addressed to the
    /// old run reaches the new one.
    pub async fn restart(&self, id: &str) -> Result<(), Error> {
        let mut record = self.existing(id)?;
        if !matches!(
            record.status,
            Status::Failed { .. } | Status::Terminated { .. }
        ) {
            return Err(invalid_state(
                id,
                "restart",
                &record,
                "only a failed or terminated instance can be restarted",
            ));
        }
        let mut commit = Commit::default();
        commit
            .histories_removed
            .push((id.to_string(), record.history_len));
        record.history_len = 0;
        // A new incarnation, so late results of the old run are told apart and dropped.
        record.incarnation = Engine::new_incarnation(Some(record.incarnation));
        record.generation = 0;
        record.status = Status::Pending;
        record.custom_status = None;
        record.updated_ms = self.shared.now_ms();
        self.shared.forget(id);
        self.begin(id, record, commit).await
    }

    /// Instances matching `query`, in id order, one page at a time.
    pub fn list(&self, query: &InstanceQuery) -> Result<Page, Error> {
        let mut instances = Vec::new();
        let mut next = None;
        for (id, record) in self.shared.store().instances()? {
            if query.after.as_ref().is_some_and(|after| id <= *after) || !query.matches(&record) {
                continue;
            }
            if instances.len() == query.page_size.max(1) {
                next = instances.last().map(|s: &InstanceSummary| s.id.clone());
                break;
            }
            instances.push(InstanceSummary {
                id,
                orchestrator: record.orchestrator,
                status: record.status.name(),
                created_ms: record.created_ms,
                updated_ms: record.updated_ms,
            });
        }
        Ok(Page { instances, next })
    }
}

fn purge_into(commit: &mut Commit, id: &str, record: &InstanceRecord) {
    commit
        .histories_removed
        .push((id.to_string(), record.history_len));
    commit.instances_removed.push(id.to_string());
}

fn refuse_if_finished(
    id: &str,
    record: &InstanceRecord,
    action: &'static str,
) -> Result<(), Error> {
    if record.status.is_terminal() {
        return Err(invalid_state(
            id,
            action,
            record,
            "it has finished; restart it or start a new instance",
        ));
    }
    Ok(())
}

fn invalid_state(
    id: &str,
    action: &'static str,
    record: &InstanceRecord,
    hint: &'static str,
) -> Error {
    Error::InvalidState {
        id: id.to_string(),
        action,
        status: record.status.name(),
        hint,
    }
}

/// Which instances [`Client::list`] returns.
#[derive(Clone, Debug)]
pub struct InstanceQuery {
    /// Only these statuses (by [`Status::name`]: `running`, `completed`, ...); all if
    /// empty.
    pub statuses: Vec<&'static str>,
    /// Only instances of this orchestrator.
    pub orchestrator: Option<String>,
    /// Only instances created at or after this time (ms since the Unix epoch).
    pub created_from_ms: Option<u64>,
    /// Only instances created before this time (ms since the Unix epoch).
    pub created_before_ms: Option<u64>,
    /// At most this many per page.
    pub page_size: usize,
    /// Start after this id: the `next` of the previous page.
    pub after: Option<String>,
}

impl Default for InstanceQuery {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            orchestrator: None,
            created_from_ms: None,
            created_before_ms: None,
            page_size: 100,
            after: None,
        }
    }
}

impl InstanceQuery {
    fn matches(&self, record: &InstanceRecord) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&record.status.name()))
            && self
                .orchestrator
                .as_ref()
                .is_none_or(|o| *o == record.orchestrator)
            && self.created_from_ms.is_none_or(|t| record.created_ms >= t)
            && self.created_before_ms.is_none_or(|t| record.created_ms < t)
    }
}

/// Which finished instances [`Client::purge_where`] removes.
#[derive(Clone, Debug, Default)]
pub struct PurgeFilter {
    /// Only these statuses (`completed`, `failed`, `terminated`); all finished if empty.
    pub statuses: Vec<&'static str>,
    /// Only instances that finished before this time (ms since the Unix epoch).
    pub finished_before_ms: Option<u64>,
}

impl PurgeFilter {
    fn matches(&self, record: &InstanceRecord) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&record.status.name()))
            && self
                .finished_before_ms
                .is_none_or(|t| record.updated_ms < t)
    }
}

/// One instance in a [`Page`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSummary {
    /// The instance id.
    pub id: String,
    /// Its orchestrator.
    pub orchestrator: String,
    /// Its status's name.
    pub status: &'static str,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last update, ms since the Unix epoch.
    pub updated_ms: u64,
}

/// A page of [`Client::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The instances, in id order.
    pub instances: Vec<InstanceSummary>,
    /// Pass as [`InstanceQuery::after`] for the next page; `None` on the last.
    pub next: Option<String>,
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

    /// The instance's current state. Where it waits or stopped: [`position`](Self::position).
    pub async fn status(&self) -> Result<InstanceStatus<O::Output>, Error> {
        self.client.status_of(&self.id)
    }

    /// Where the instance stands in its code: the steps it awaits and the last one it
    /// issued, with their await sites (see [`Client::position`]).
    pub async fn position(&self) -> Result<Position, Error> {
        self.client.position(&self.id)
    }

    /// The custom status the orchestrator last set with `ctx.set_custom_status`.
    pub async fn custom_status<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        match self.client.existing(&self.id)?.custom_status {
            Some(bytes) => Ok(Some(payload::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Raises external event `name` to this instance (see [`Client::raise_event`]).
    pub async fn raise_event<T: Serialize>(
        &self,
        name: impl AsEventName<T>,
        payload: &T,
    ) -> Result<(), Error> {
        self.client.raise_event(&self.id, name, payload).await
    }

    /// The events this instance set aside (see [`Client::set_aside_events`]).
    pub fn set_aside_events(&self) -> Result<Vec<SetAsideEvent>, Error> {
        self.client.set_aside_events(&self.id)
    }

    /// Terminates this instance (see [`Client::terminate`]).
    pub async fn terminate(&self, reason: &str) -> Result<(), Error> {
        self.client.terminate(&self.id, reason).await
    }

    /// Suspends this instance (see [`Client::suspend`]).
    pub async fn suspend(&self, reason: &str) -> Result<(), Error> {
        self.client.suspend(&self.id, reason).await
    }

    /// Resumes this instance (see [`Client::resume`]).
    pub async fn resume(&self) -> Result<(), Error> {
        self.client.resume(&self.id).await
    }

    /// Waits until the instance finishes and returns its output; fails with
    /// [`Error::Failed`] if it failed, [`Error::Stalled`] if it stalled,
    /// [`Error::Terminated`] if it was terminated, and [`Error::Timeout`] if it has not
    /// finished within `timeout`. If the store starts refusing every write (a failed
    /// fsync; see [`StoreError::Poisoned`](crate::StoreError::Poisoned)), the runtime halts,
    /// and for an instance not finished by then this returns that error at once: restart
    /// the process to go on.
    pub async fn wait(&self, timeout: Duration) -> Result<O::Output, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = || self.id.clone();
        let shared = &self.client.shared;
        loop {
            // Watch before reading, so a finish between the two is not missed.
            let finished = shared.watch(&self.id);
            let halted = shared.on_halt();
            let stopped = shared.halted().cloned();
            match self.status().await? {
                InstanceStatus::Completed(output) => return Ok(output),
                InstanceStatus::Failed(failure) => return Err(Error::Failed { id: id(), failure }),
                InstanceStatus::Stalled(failure) => {
                    return Err(Error::Stalled { id: id(), failure });
                }
                InstanceStatus::Terminated(reason) => {
                    return Err(Error::Terminated { id: id(), reason });
                }
                InstanceStatus::Pending
                | InstanceStatus::Running
                | InstanceStatus::Suspended(_) => {
                    // A halted runtime finishes nothing more.
                    if let Some(e) = stopped {
                        return Err(Error::Store(e));
                    }
                }
            }
            let woken = async {
                tokio::select! {
                    _ = finished => {}
                    () = halted => {}
                }
            };
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Err(Error::Timeout { id: id(), timeout });
            }
        }
    }
}

/// Checks an id a user chose: a valid id that does not have the form of the ids the
/// runtime generates (see [`GENERATED_ID_PREFIX`]).
pub(crate) fn check_user_instance_id(id: &str) -> Result<(), Error> {
    check_instance_id(id)?;
    if has_generated_form(id) {
        return Err(Error::InvalidInstanceId {
            id: id.to_string(),
            reason: "it has the form `~{parent}~{hex}.{generation}.{step}`, which is reserved for the ids generated for sub-orchestrations started without one; choose an id that does not",
        });
    }
    Ok(())
}

/// Whether `id` has the form of an id [`generated_child_id`] makes:
/// `~{anything}~{hex digits}.{digits}.{digits}`. Every generated id has it (the part after
/// its last `~` is the suffix, which holds no `~`), so an id without it is never one.
fn has_generated_form(id: &str) -> bool {
    let Some(rest) = id.strip_prefix(GENERATED_ID_PREFIX) else {
        return false;
    };
    let Some((parent, suffix)) = rest.rsplit_once(GENERATED_ID_PREFIX) else {
        return false;
    };
    let mut parts = suffix.split('.');
    let is = |part: Option<&str>, digit: fn(&char) -> bool| {
        part.is_some_and(|p| !p.is_empty() && p.chars().all(|c| digit(&c)))
    };
    !parent.is_empty()
        && is(parts.next(), char::is_ascii_hexdigit)
        && is(parts.next(), char::is_ascii_digit)
        && is(parts.next(), char::is_ascii_digit)
        && parts.next().is_none()
}

/// The id of the sub-orchestration that step `seq` of run `(incarnation, generation)` of
/// `parent` starts without an explicit id:
/// `~{parent}~{incarnation as hex}.{generation}.{seq}`. Unique per parent run and step,
/// never an id a user may choose (its form is reserved), and a valid id whatever the
/// parent's id: a parent id too long to fit is cut, and a hash of the whole id added.
pub(crate) fn generated_child_id(
    parent: &str,
    incarnation: Incarnation,
    generation: u32,
    seq: u64,
) -> String {
    let suffix = format!("{GENERATED_ID_PREFIX}{incarnation:x}.{generation}.{seq}");
    let room = MAX_INSTANCE_ID_LEN - GENERATED_ID_PREFIX.len_utf8() - suffix.len();
    let mut id = String::with_capacity(MAX_INSTANCE_ID_LEN);
    id.push(GENERATED_ID_PREFIX);
    if parent.len() <= room {
        id.push_str(parent);
    } else {
        // `#` and 16 hex digits of the parent id's FNV-1a hash after its longest prefix
        // that fits on a character boundary.
        let hash = parent.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut cut = room - 17;
        while !parent.is_char_boundary(cut) {
            cut -= 1;
        }
        id.push_str(&parent[..cut]);
        id.push_str(&format!("#{hash:016x}"));
    }
    id.push_str(&suffix);
    id
}

pub(crate) fn check_instance_id(id: &str) -> Result<(), Error> {
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
    shared: &'a Engine,
    id: String,
}

impl<'a> StartGuard<'a> {
    async fn acquire(shared: &'a Engine, id: &str) -> Self {
        loop {
            let notified = shared.start_released();
            if shared.claim_start(id) {
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
        self.shared.release_start(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_child_ids_are_valid_distinct_and_reserved_whatever_the_parent_id() {
        let long_ascii = "p".repeat(MAX_INSTANCE_ID_LEN);
        // Multi-byte characters across the cut.
        let long_wide = "é€😀".repeat(40);
        let nested = generated_child_id(&long_wide, 7, 0, 1);
        let mut seen = std::collections::HashSet::new();
        for parent in ["p", "a~b", long_ascii.as_str(), long_wide.as_str(), &nested] {
            for (incarnation, generation, seq) in [
                (1, 0, 0),
                (1, 0, 1),
                (1, 1, 0),
                (2, 0, 0),
                (u64::MAX, u32::MAX, u64::MAX),
            ] {
                let id = generated_child_id(parent, incarnation, generation, seq);
                check_instance_id(&id).unwrap();
                assert!(check_user_instance_id(&id).is_err(), "{id}");
                assert!(seen.insert(id.clone()), "{id} generated twice");
            }
        }
        // Two long parents that share the part kept still get different ids.
        let other = format!("{}q", "p".repeat(MAX_INSTANCE_ID_LEN - 1));
        assert_ne!(
            generated_child_id(&long_ascii, 1, 0, 0),
            generated_child_id(&other, 1, 0, 0)
        );
        assert_eq!(generated_child_id("p", 0xab, 2, 3), "~p~ab.2.3");
        // Ids derived from a generated one, or starting with `~` otherwise, are a user's.
        for id in [
            "~p~ab.2.3-audit",
            "~p~ab.2.3~audit",
            "~tilde",
            "~~",
            "~p~ab.2",
            "~p~ab.2.3.4",
            "~p~xy.2.3",
            "~~ab.2.3",
        ] {
            check_user_instance_id(id).unwrap();
        }
    }
}
