//! The client: start instances, read their status, wait for their output, and manage
//! them (events, terminate, suspend, resume, purge, restart, list).
//!
//! `mod.rs` starts instances, raises events and reads records; [`instance`] holds the
//! typed handle on one instance, [`control`] the requests that change an instance's
//! course, [`query`] listing and purge filters, [`entity_query`] listing entities,
//! [`start_options`] the options of a start; the rules for ids are in `crate::instance_id`.

mod control;
mod entities;
pub(crate) mod entity_query;
pub(crate) mod instance;
pub(crate) mod query;
pub(crate) mod start_options;

use std::sync::Arc;

use durable_store::{Commit, Event, InstanceRecord, Status, Store, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::client::control::refuse_if_finished;
use crate::client::instance::{Instance, InstanceStatus};
use crate::client::start_options::StartOptions;
use crate::error::{ClientRequest, Error};
use crate::external_event::AsEventName;
use crate::handle::Orchestrator;
use crate::instance_id::check_user_instance_id;
use crate::payload::{self, PayloadError};
use crate::position::Position;
use crate::replay::state::Run;
use crate::runtime::dead_letter::{Marker, marker_key};
use crate::runtime::engine::{Engine, Recipient};
use crate::runtime::entities::is_entity;
use crate::runtime::timer_arming;
use crate::telemetry::{TraceContext, spans};

/// A raised event an instance set aside: its payload did not decode as the type the
/// orchestrator waits for. See [`Client::set_aside_events`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// [`PayloadError`] if the payload is not JSON.
    pub fn payload_json(&self) -> Result<serde_json::Value, PayloadError> {
        payload::to_json(&self.payload)
    }
}

/// Starts instances and reads their state. Cheap to clone; get one from
/// [`Runtime::client`](crate::Runtime::client).
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) engine: Arc<Engine>,
    /// The trace context its starts and raises carry ([`Client::with_trace_context`]).
    trace: Option<Arc<TraceContext>>,
}

impl Client {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            trace: None,
        }
    }

    /// This client, its starts and raised events carrying the W3C trace context `trace`:
    /// the instances' turns and activities open their spans as its children, across
    /// restarts and workers (see the `telemetry` section of the crate's README). For a
    /// caller that has a `traceparent` (an incoming request's header) and no
    /// OpenTelemetry layer; with the `otel` feature, a client without one takes the
    /// context of the current `tracing` span.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: durable_core::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use durable_core::TraceContext;
    ///
    /// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let traced = client.with_trace_context(TraceContext::from_traceparent(header)?);
    /// traced.raise_event("order-42", "approved", &true).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_trace_context(&self, trace: TraceContext) -> Client {
        Client {
            engine: self.engine.clone(),
            trace: Some(Arc::new(trace)),
        }
    }

    /// The trace context set with [`with_trace_context`](Self::with_trace_context).
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.trace.as_deref()
    }

    /// A client for tools (the `durable` CLI, a dashboard over a store, an operator's
    /// script) over `store`: it reads instances and sends requests (raise an event,
    /// terminate, suspend, resume, restart, purge), and never acts on its own. It joins no
    /// lease, claims nothing, recovers nothing, and runs no turn and no activity: reading
    /// a stalled instance through it leaves the instance exactly as it was.
    ///
    /// What it sends is committed to the store and left there for a worker: on a shared
    /// store (PostgreSQL) the worker that holds the instance takes it at its next claim;
    /// on a store one process holds (fjall) the application takes it when a
    /// [`Runtime`](crate::Runtime) next starts on the store. It cannot
    /// [`start`](Self::start) instances (it has no orchestrators registered), and its
    /// [`Instance::wait`] polls the store. Payloads are checked against the default
    /// limit, [`DEFAULT_MAX_PAYLOAD_BYTES`](crate::DEFAULT_MAX_PAYLOAD_BYTES). A send to a
    /// store that keeps failing gives up after 5 s with
    /// [`Error::StoreUnavailable`], nothing sent, where a runtime's client would wait for
    /// the store as long as it takes.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use durable_core::{Client, FjallStore};
    ///
    /// let client = Client::open(FjallStore::open("data/durable")?).await?;
    /// println!("{:?}", client.position("order-42").await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub async fn open(store: impl Store) -> Result<Client, Error> {
        let store: Arc<dyn Store> = Arc::new(store);
        // Read once, so a store that cannot be read says so here, not at the first call.
        store.count_by_status()?;
        Ok(Self::new(Arc::new(crate::runtime::tool::engine(store))))
    }

    /// Starts orchestrator `orchestrator` as instance `id` with `input`. Returns once the
    /// instance is durably recorded: from then on it runs to completion, across crashes.
    /// The same as [`start_with`](Self::start_with) with the default [`StartOptions`].
    ///
    /// Starting an id that already exists (for the same orchestrator) starts nothing and
    /// returns the existing instance; [`Instance::is_new`] tells which happened. A new
    /// instance under the id of a purged one is a run of its own: nothing addressed to the
    /// purged run (a timer, an activity result, a child's completion) reaches it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInstanceId`] for an empty id, one longer than
    /// [`MAX_INSTANCE_ID_LEN`](crate::MAX_INSTANCE_ID_LEN) bytes, one with control
    /// characters, or one of the form of the ids generated for sub-orchestrations (see
    /// [`GENERATED_ID_PREFIX`](crate::GENERATED_ID_PREFIX)) or of an entity's id
    /// (`@Name@key`, [`InvalidIdReason::EntityForm`](crate::InvalidIdReason::EntityForm));
    /// [`Error::UnregisteredOrchestrator`] if `orchestrator` is not registered with the
    /// runtime; [`Error::InstanceConflict`] if the id runs another orchestrator;
    /// [`Error::Payload`] if `input` does not encode; [`Error::PayloadTooLarge`] if it is
    /// over the payload limit; [`Error::Store`] if the instance cannot be read or written.
    pub async fn start<O: Orchestrator>(
        &self,
        orchestrator: O,
        id: impl Into<String>,
        input: O::Input,
    ) -> Result<Instance<O>, Error> {
        self.start_with(orchestrator, id, input, StartOptions::default())
            .await
    }

    /// [`start`](Self::start), with `options`: a delayed start
    /// ([`StartOptions::start_at`], [`StartOptions::start_delay`]), whose instance is
    /// recorded (pending, listed, its id taken) at once and runs its first turn at its time
    /// by the runtime's clock, across restarts; an execution timeout
    /// ([`StartOptions::execution_timeout`]), after which the instance fails as timed out
    /// whatever it is doing, across restarts and continue-as-new (not across a
    /// [`restart`](Self::restart), a new run); a limit on recoveries
    /// ([`StartOptions::max_recoveries`]), after which an instance that crashes its worker
    /// every time is parked (dead-lettered). A start of an id that exists
    /// returns the existing instance, whatever its options were.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use durable_core::{Client, Orchestrator};
    /// # async fn run<O: Orchestrator<Input = u32>>(client: Client, nightly: O) -> Result<(), durable_core::Error> {
    /// use std::time::Duration;
    /// use durable_core::StartOptions;
    ///
    /// let options = StartOptions::new()
    ///     .start_delay(Duration::from_secs(3600))
    ///     .execution_timeout(Duration::from_secs(2 * 3600));
    /// client.start_with(nightly, "migration-42", 42, options).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with<O: Orchestrator>(
        &self,
        orchestrator: O,
        id: impl Into<String>,
        input: O::Input,
        options: StartOptions,
    ) -> Result<Instance<O>, Error> {
        let _ = orchestrator;
        let id = id.into();
        let span = spans::client_call(spans::START, O::NAME, &id, self.trace_context());
        let started = async {
            if (self.engine.registry())
                .orchestrator(O::NAME, O::VERSION)
                .is_none()
            {
                return Err(Error::UnregisteredOrchestrator(O::NAME.to_string()));
            }
            let input = payload::encode(&input)?;
            self.start_encoded_with(O::NAME, O::VERSION, &id, input, options)
                .await
        };
        let is_new = started.instrument(span).await?;
        Ok(Instance::new(self.clone(), id, is_new))
    }

    /// Starts version `version` of orchestrator `orchestrator` (a registered name) as
    /// instance `id` with `input`, already encoded, and `options`; returns whether it is
    /// new (false: the id existed, for the same orchestrator). The typed
    /// [`start_with`](Self::start_with) ends here, after checking that this runtime has
    /// the orchestrator; a schedule's start comes here by name, registered here or not
    /// (another worker may run it).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), but for [`Error::Payload`] and
    /// [`Error::UnregisteredOrchestrator`].
    pub(crate) async fn start_encoded_with(
        &self,
        orchestrator: &str,
        version: u32,
        id: &str,
        input: Vec<u8>,
        options: StartOptions,
    ) -> Result<bool, Error> {
        check_user_instance_id(id)?;
        let _guard = StartGuard::acquire(&self.engine, id).await;
        // Not read first: the commit below creates the instance only if it is absent, and
        // is refused whole if it exists (a round trip saved on every new id).
        self.engine.check_payload(
            || format!("the input of orchestrator `{orchestrator}`"),
            &input,
        )?;
        let now_ms = self.engine.now_ms();
        let record = InstanceRecord::pending(
            orchestrator.to_string(),
            version,
            input,
            now_ms,
            Engine::new_incarnation(None),
            None,
        );
        let commit = Commit {
            // Another process may start the id at the same time: one start creates it.
            expected: vec![(id.to_string(), None)],
            ..Commit::default()
        };
        let begun = if options == StartOptions::default() {
            self.begin(id, record, commit).await
        } else {
            self.begin_with(id, record, commit, options, now_ms).await
        };
        match begun {
            Ok(()) => Ok(true),
            // Another start created it first (a worker holding it may refuse this one as
            // fenced before the store compares incarnations).
            Err(Error::Store(StoreError::InstanceChanged { .. } | StoreError::Fenced { .. })) => {
                match self.engine.store().instance(id)? {
                    Some(existing) if existing.orchestrator != orchestrator => {
                        Err(Error::InstanceConflict {
                            id: id.to_string(),
                            existing: existing.orchestrator,
                            requested: orchestrator.to_string(),
                        })
                    }
                    _ => Ok(false),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// [`begin`](Self::begin) for a start with `options`, made at `now_ms`: the messages
    /// are the `Started` (unless the start is delayed: a durable timer then brings it at
    /// its time, see `runtime::timer_arming::START_SEQ`), the execution deadline, and the
    /// caller's trace context; with a limit on recoveries, its marker (see
    /// `runtime/dead_letter.rs`).
    async fn begin_with(
        &self,
        id: &str,
        record: InstanceRecord,
        mut commit: Commit,
        options: StartOptions,
        now_ms: u64,
    ) -> Result<(), Error> {
        let run = Run::of(&record);
        let mut events = Vec::with_capacity(3);
        let delayed = match options.start_ms(now_ms) {
            Some(at_ms) => Some(timer_arming::store_start(
                &self.engine,
                id,
                run,
                at_ms,
                &mut commit,
            )),
            None => {
                events.push(Event::Started {
                    orchestrator: record.orchestrator.clone(),
                    input: record.input.clone(),
                });
                None
            }
        };
        if let Some(at_ms) = options.deadline_ms(now_ms) {
            events.push(Event::ExecutionDeadline { at_ms });
        }
        events.extend(TraceContext::for_request(self.trace_context()).map(|t| t.to_event()));
        if let Some(limit) = options.recoveries() {
            let marker = Marker {
                limit: Some(limit),
                ..Marker::default()
            };
            let key = marker_key(id, record.incarnation);
            commit.progress.push((key, Some(marker.encode())));
        }
        commit.instances.push((id.to_string(), record));
        (self.engine)
            .send_events(id, Recipient::from(run), events, commit)
            .await?;
        if let Some(timer) = delayed {
            timer_arming::arm(&self.engine, id.to_string(), run, timer);
        }
        Ok(())
    }

    /// Writes `record` (with a `Started` event for its generation) in `commit`, then hands
    /// the event to the runtime.
    async fn begin(
        &self,
        id: &str,
        record: InstanceRecord,
        mut commit: Commit,
    ) -> Result<(), Error> {
        let to = Recipient::from(Run::of(&record));
        let started = Event::Started {
            orchestrator: record.orchestrator.clone(),
            input: record.input.clone(),
        };
        commit.instances.push((id.to_string(), record));
        self.send_traced(id, to, started, commit).await
    }

    /// [`send`](Self::send), with the caller's trace context ([`TraceContext::for_request`]).
    async fn send_traced(
        &self,
        id: &str,
        to: Recipient,
        event: Event,
        commit: Commit,
    ) -> Result<(), Error> {
        let trace = TraceContext::for_request(self.trace_context()).map(|t| t.to_event());
        (self.engine)
            .send_traced(id, to, event, trace, commit)
            .await
    }

    /// Commits `event` as a message for run `to` of `id`, with whatever else `commit`
    /// holds, then hands it to the runtime.
    async fn send(
        &self,
        id: &str,
        to: Recipient,
        event: Event,
        commit: Commit,
    ) -> Result<(), Error> {
        self.engine.send_message(id, to, event, commit).await
    }

    /// A typed handle on an existing instance of `orchestrator` (not checked until used:
    /// its reads then fail with [`Error::InstanceNotFound`] if there is none).
    pub fn instance<O: Orchestrator>(&self, orchestrator: O, id: impl Into<String>) -> Instance<O> {
        let _ = orchestrator;
        Instance::new(self.clone(), id.into(), false)
    }

    /// The stored record of instance `id`, with its payloads still encoded; `None` if
    /// there is no such instance.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the record cannot be read.
    pub async fn record(&self, id: &str) -> Result<Option<InstanceRecord>, Error> {
        Ok(self.engine.store().instance(id)?)
    }

    /// The record of orchestration instance `id`, which must exist: an entity's is
    /// refused ([`Error::IsAnEntity`]), so no orchestration call (a status, a wait, an
    /// event, a terminate, a purge...) takes an entity for an instance.
    async fn existing(&self, id: &str) -> Result<InstanceRecord, Error> {
        let record =
            (self.record(id).await?).ok_or_else(|| Error::InstanceNotFound(id.to_string()))?;
        if is_entity(id, &record) {
            return Err(Error::IsAnEntity(id.to_string()));
        }
        Ok(record)
    }

    /// Where instance `id` stands in its code: the steps whose results it has not had
    /// (a step it gave up on, like the timer of a `timeout` that lost, stays listed until
    /// it fires) and the last one it issued, each with its step number and await site.
    /// For a stalled, failed or terminated instance, where it stopped.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::Store`] if its
    /// record or history cannot be read.
    pub async fn position(&self, id: &str) -> Result<Position, Error> {
        self.existing(id).await?;
        Ok(Position::of(&self.engine.store().history(id)?))
    }

    /// The status of instance `id`, its output decoded as `T`.
    async fn status_of<T: DeserializeOwned>(&self, id: &str) -> Result<InstanceStatus<T>, Error> {
        Self::status_in(self.existing(id).await?)
    }

    /// The status `record` holds, its output decoded as `T`.
    fn status_in<T: DeserializeOwned>(record: InstanceRecord) -> Result<InstanceStatus<T>, Error> {
        Ok(match record.status {
            Status::Pending => InstanceStatus::Pending,
            Status::Running => InstanceStatus::Running,
            Status::Completed { output } => InstanceStatus::Completed(payload::decode(&output)?),
            Status::Failed { failure } => InstanceStatus::Failed(failure),
            Status::Stalled { failure } => InstanceStatus::Stalled(failure),
            Status::Terminated { reason } => InstanceStatus::Terminated(reason),
            Status::Suspended { reason } => InstanceStatus::Suspended(reason),
            Status::DeadLettered { reason } => InstanceStatus::DeadLettered(reason),
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
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::InvalidState`]
    /// if it has finished; [`Error::Payload`] if `payload` does not encode;
    /// [`Error::PayloadTooLarge`] if it is over the payload limit; [`Error::Store`] if the
    /// event cannot be written.
    pub async fn raise_event<T: Serialize>(
        &self,
        id: &str,
        name: impl AsEventName<T>,
        payload: &T,
    ) -> Result<(), Error> {
        let name = name.event_name();
        let span = spans::client_call(spans::SIGNAL, name, id, self.trace_context());
        self.raise_in_span(id, name, payload).instrument(span).await
    }

    /// [`raise_event`](Self::raise_event), in its span.
    async fn raise_in_span<T: Serialize>(
        &self,
        id: &str,
        name: &str,
        payload: &T,
    ) -> Result<(), Error> {
        let record = self.existing(id).await?;
        refuse_if_finished(id, &record, ClientRequest::RaiseEvent)?;
        let payload = payload::encode(payload)?;
        self.engine
            .check_payload(|| format!("the payload of event `{name}`"), &payload)?;
        let event = Event::EventRaised {
            name: name.to_string(),
            payload,
        };
        let to = Recipient::any_generation(record.incarnation);
        self.send_traced(id, to, event, Commit::default()).await
    }

    /// The events instance `id` set aside in its current generation, oldest first: raised
    /// events whose payload did not decode as the type its orchestrator waits for. Each is
    /// also in the history, as `Event::EventSetAside`.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::Store`] if the
    /// history cannot be read.
    pub async fn set_aside_events(&self, id: &str) -> Result<Vec<SetAsideEvent>, Error> {
        self.existing(id).await?;
        let history = self.engine.store().history(id)?;
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
}

/// Holds an instance id in the set of ids being created, so that concurrent starts of one
/// id run one after the other and the later ones find the instance.
struct StartGuard<'a> {
    engine: &'a Engine,
    id: String,
}

impl<'a> StartGuard<'a> {
    async fn acquire(engine: &'a Engine, id: &str) -> Self {
        loop {
            let notified = engine.start_released();
            if engine.claim_start(id) {
                return Self {
                    engine,
                    id: id.to_string(),
                };
            }
            notified.await;
        }
    }
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.engine.release_start(&self.id);
    }
}
