//! [`Event`]: one event of an instance's history, or a message on its way to one.

use serde::{Deserialize, Serialize};

use super::{Failure, ParentLink, Site};

/// One event of an instance's history. The history is the ordered list of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The instance started with this input.
    Started {
        /// Registered name of the orchestrator.
        orchestrator: String,
        /// Encoded input.
        input: Vec<u8>,
    },
    /// The orchestrator scheduled an activity as durable step `seq`.
    ActivityScheduled {
        /// Sequence number of the durable operation, in program order.
        seq: u64,
        /// Registered name of the activity.
        activity: String,
        /// Encoded input.
        input: Vec<u8>,
        /// Where the orchestrator issued the call.
        site: Site,
    },
    /// The activity of step `seq` returned `Ok`.
    ActivityCompleted {
        /// Step the result belongs to.
        seq: u64,
        /// Encoded output.
        output: Vec<u8>,
    },
    /// The activity of step `seq` returned `Err` or panicked.
    ActivityFailed {
        /// Step the failure belongs to.
        seq: u64,
        /// The execution of the call that failed (1 for the first): the task's `attempt`.
        attempt: u32,
        /// What went wrong.
        failure: Failure,
    },
    /// The orchestrator started a durable timer as step `seq`.
    TimerCreated {
        /// Step number.
        seq: u64,
        /// When it fires, milliseconds since the Unix epoch.
        fire_at_ms: u64,
        /// Where the orchestrator created it.
        site: Site,
    },
    /// The timer of step `seq` fired.
    TimerFired {
        /// Step the timer belongs to.
        seq: u64,
    },
    /// The orchestrator started a sub-orchestration as step `seq`.
    SubOrchestrationScheduled {
        /// Step number.
        seq: u64,
        /// Registered name of the child orchestrator.
        orchestrator: String,
        /// Instance id of the child.
        instance: String,
        /// Encoded input.
        input: Vec<u8>,
        /// Where the orchestrator issued the call.
        site: Site,
    },
    /// The sub-orchestration of step `seq` completed.
    SubOrchestrationCompleted {
        /// Step the result belongs to.
        seq: u64,
        /// Encoded output.
        output: Vec<u8>,
    },
    /// The sub-orchestration of step `seq` failed.
    SubOrchestrationFailed {
        /// Step the failure belongs to.
        seq: u64,
        /// What went wrong.
        failure: Failure,
    },
    /// A value the orchestrator took from the outside world (the time, a random number, a
    /// `side_effect`), recorded as step `seq` so replays see the same value.
    Recorded {
        /// Step number.
        seq: u64,
        /// What was recorded (`now`, `random`, `uuid`, `side_effect`, ...).
        what: String,
        /// The encoded value.
        value: Vec<u8>,
        /// Where the orchestrator asked for it.
        site: Site,
    },
    /// An external event was raised to the instance.
    EventRaised {
        /// The event's name.
        name: String,
        /// Encoded payload.
        payload: Vec<u8>,
    },
    /// The orchestrator set its custom status.
    CustomStatusSet {
        /// The encoded status.
        status: Vec<u8>,
    },
    /// The orchestrator returned `Ok`.
    Completed {
        /// Encoded output.
        output: Vec<u8>,
    },
    /// The orchestrator returned `Err`, panicked, or its history could not be replayed.
    Failed {
        /// What went wrong.
        failure: Failure,
    },
    /// The orchestrator restarted itself with a fresh history and this input.
    ContinuedAsNew {
        /// Encoded input of the next generation.
        input: Vec<u8>,
    },
    /// A client asked the instance to stop.
    TerminateRequested {
        /// Why, as the client said.
        reason: String,
    },
    /// A client asked the instance to pause.
    SuspendRequested {
        /// Why, as the client said.
        reason: String,
    },
    /// A client asked the instance to go on after a suspend.
    ResumeRequested,
    /// A raised event a wait of the orchestrator could not take, because its payload does
    /// not decode as the type the wait expects: taken out of the event queue and kept
    /// here, so the wait goes on to the next event of its name and the instance keeps
    /// running.
    EventSetAside {
        /// The event's name.
        name: String,
        /// Which event of that name this generation received (0 for the first), counting
        /// `EventRaised` events of that name in the history.
        index: u32,
        /// Its payload, as raised.
        payload: Vec<u8>,
        /// Why it was set aside: the decode error, naming the type the wait expects.
        reason: String,
    },
    /// An operation for an entity (an instance whose id is `@name@key`): the message a
    /// signal sends. Never in a history: an entity's turn runs it on the state its record
    /// holds and consumes the message. (Last of the variants, so every record written
    /// before entities existed reads as before.)
    EntityOperation {
        /// The operation's name.
        operation: String,
        /// Encoded input.
        input: Vec<u8>,
        /// The instance that sent it (an entity or an orchestration); `None` for a client.
        sender: Option<String>,
        /// Not to run before this time, milliseconds since the Unix epoch (a scheduled
        /// signal); `None` to run at once.
        at_ms: Option<u64>,
    },
    // Orchestrations and entities (issue 14, step 3). The variants below come after
    // `EntityOperation`, so every record written before them reads as before. "History"
    // marks an event of an orchestration's history; "message" one sent as a
    // `WorkItem::Message`; some are both (a message appended to the history it reaches).
    /// History: the orchestrator called `operation` of the entity `entity` (its instance
    /// id, `@Name@key`) as step `seq`, two-way: its result comes back as
    /// [`EntityCompleted`](Event::EntityCompleted) or [`EntityFailed`](Event::EntityFailed).
    EntityCalled {
        /// Step number.
        seq: u64,
        /// The entity's instance id.
        entity: String,
        /// The operation's name.
        operation: String,
        /// Encoded input.
        input: Vec<u8>,
        /// Where the orchestrator issued the call.
        site: Site,
    },
    /// History: the orchestrator signalled `operation` of `entity` one-way as step `seq`
    /// (sent as an [`EntityOperation`](Event::EntityOperation) with the orchestration as
    /// its sender).
    EntitySignaled {
        /// Step number.
        seq: u64,
        /// The entity's instance id.
        entity: String,
        /// The operation's name.
        operation: String,
        /// Encoded input.
        input: Vec<u8>,
        /// Not to run before this time, milliseconds since the Unix epoch; `None` at once.
        at_ms: Option<u64>,
        /// Where the orchestrator sent it.
        site: Site,
    },
    /// Message to an entity: a two-way call from an orchestration. The entity runs the
    /// operation and answers `caller` (its instance, incarnation and generation, and the
    /// step `seq` that called) with `EntityCompleted` or `EntityFailed`.
    EntityCall {
        /// The operation's name.
        operation: String,
        /// Encoded input.
        input: Vec<u8>,
        /// The orchestration that called, and its step.
        caller: ParentLink,
    },
    /// Message to an orchestration, then in its history: the entity call of step `seq`
    /// returned `Ok`.
    EntityCompleted {
        /// Step the result belongs to.
        seq: u64,
        /// Encoded output.
        output: Vec<u8>,
    },
    /// Message to an orchestration, then in its history: the entity call of step `seq`
    /// failed (the operation returned `Err`, panicked, or could not run).
    EntityFailed {
        /// Step the failure belongs to.
        seq: u64,
        /// What went wrong.
        failure: Failure,
    },
    /// History: the orchestrator asked, as step `seq`, to lock `entities` (instance ids,
    /// sorted and without duplicates: the global order that keeps two critical sections
    /// from deadlocking, as in DTFx's `EmitAcquireMessage`).
    EntityLockRequested {
        /// Step number.
        seq: u64,
        /// The entities' instance ids, sorted, no duplicates.
        entities: Vec<String>,
        /// Where the orchestrator asked.
        site: Site,
    },
    /// Message to `entities[position]`: lock yourself for `owner` (the orchestration and
    /// its lock step), then send this on to `entities[position + 1]`, or, from the last,
    /// answer `owner` with [`EntityLockGranted`](Event::EntityLockGranted).
    EntityLock {
        /// The orchestration that asks, and the step of its lock request.
        owner: ParentLink,
        /// Every entity of the request, sorted, no duplicates.
        entities: Vec<String>,
        /// Which of `entities` this message is for.
        position: u32,
    },
    /// Message to an orchestration, then in its history: every entity of the lock
    /// request of step `seq` is locked for it.
    EntityLockGranted {
        /// The lock request's step.
        seq: u64,
    },
    /// History: the orchestrator released the locks of its lock request of step
    /// `lock_seq` (the critical section ended, or the orchestration did), sending
    /// [`EntityUnlock`](Event::EntityUnlock) to each entity.
    EntityLocksReleased {
        /// The lock request's step.
        lock_seq: u64,
    },
    /// Message to an entity: the critical section of `owner` (its lock step in `seq`)
    /// ended; the entity runs what waited for it.
    EntityUnlock {
        /// The orchestration that held the lock, and the step of its lock request.
        owner: ParentLink,
    },
    // Issue 15 (admin): after the variants above, so every record written before reads
    // as before.
    /// History: a turn of the orchestration began at `at_ms`; the events after it, up to
    /// the next `TurnStarted`, were appended by that turn (Durable Task Framework's
    /// `OrchestratorStarted`). One per turn that appends events, first of them. Not a
    /// step, not a message: replay skips it. Only tools read it, for the times of the
    /// history's events; a history written before it existed has none.
    TurnStarted {
        /// The turn's time by the runtime's clock, milliseconds since the Unix epoch.
        at_ms: u64,
    },
    // Traces (issue 15, section 3). After the entity variants, so every record written
    // before it reads as before.
    /// Message, then in the history: the W3C trace context of the caller that started the
    /// instance or raised an event to it, sent beside the `Started` or `EventRaised` it
    /// came with. From then on the instance's turns, and the activities they schedule,
    /// open their spans as children of it (`durable_core`'s `telemetry` module). Not a
    /// step: replay skips it, and it changes nothing the orchestrator sees.
    TraceContext {
        /// The `traceparent` header: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
        traceparent: String,
        /// The `tracestate` header, vendor data that travels with the trace; empty for none.
        tracestate: String,
    },
    // Event waits (issue 15). Last, so every record written before it reads as before.
    /// History: the orchestration began waiting for the `index`-th event of `name` (0 for
    /// the first, counted per name in this generation) and it had not arrived. Appended
    /// once per (name, index), by the turn that ended with the wait live. Not a step:
    /// replay skips it. Tools read it for the events an instance awaits.
    EventAwaited {
        /// The event's name.
        name: String,
        /// Which event of that name the wait takes (0 for the first this generation).
        index: u32,
        /// Where the orchestrator waits.
        site: Site,
    },
    // Start options (issue 16). Last, so every record written before them reads as before.
    /// Message, then in the history: the instance's execution deadline (Temporal's workflow
    /// execution timeout), sent beside the `Started` of a start with an execution timeout
    /// and carried to each next generation (continue-as-new), as `TraceContext` is. Not a
    /// step: replay notes it, and the runtime arms the deadline's durable timer from it.
    ExecutionDeadline {
        /// When the instance times out, milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// Message, then in the history: the execution deadline passed. Replay ends the
    /// instance with a `FailureKind::TimedOut` failure, whatever it was waiting on.
    ExecutionTimedOut,
}

impl Event {
    /// The variant's name, as this enum spells it (`ActivityScheduled`, `TurnStarted`, ...):
    /// the `kind` column of PostgreSQL's history rows, and the kind tools show.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Started { .. } => "Started",
            Self::ActivityScheduled { .. } => "ActivityScheduled",
            Self::ActivityCompleted { .. } => "ActivityCompleted",
            Self::ActivityFailed { .. } => "ActivityFailed",
            Self::TimerCreated { .. } => "TimerCreated",
            Self::TimerFired { .. } => "TimerFired",
            Self::SubOrchestrationScheduled { .. } => "SubOrchestrationScheduled",
            Self::SubOrchestrationCompleted { .. } => "SubOrchestrationCompleted",
            Self::SubOrchestrationFailed { .. } => "SubOrchestrationFailed",
            Self::Recorded { .. } => "Recorded",
            Self::EventRaised { .. } => "EventRaised",
            Self::CustomStatusSet { .. } => "CustomStatusSet",
            Self::Completed { .. } => "Completed",
            Self::Failed { .. } => "Failed",
            Self::ContinuedAsNew { .. } => "ContinuedAsNew",
            Self::TerminateRequested { .. } => "TerminateRequested",
            Self::SuspendRequested { .. } => "SuspendRequested",
            Self::ResumeRequested => "ResumeRequested",
            Self::EventSetAside { .. } => "EventSetAside",
            Self::EntityOperation { .. } => "EntityOperation",
            Self::EntityCalled { .. } => "EntityCalled",
            Self::EntitySignaled { .. } => "EntitySignaled",
            Self::EntityCall { .. } => "EntityCall",
            Self::EntityCompleted { .. } => "EntityCompleted",
            Self::EntityFailed { .. } => "EntityFailed",
            Self::EntityLockRequested { .. } => "EntityLockRequested",
            Self::EntityLock { .. } => "EntityLock",
            Self::EntityLockGranted { .. } => "EntityLockGranted",
            Self::EntityLocksReleased { .. } => "EntityLocksReleased",
            Self::EntityUnlock { .. } => "EntityUnlock",
            Self::TurnStarted { .. } => "TurnStarted",
            Self::TraceContext { .. } => "TraceContext",
            Self::EventAwaited { .. } => "EventAwaited",
            Self::ExecutionDeadline { .. } => "ExecutionDeadline",
            Self::ExecutionTimedOut => "ExecutionTimedOut",
        }
    }
}
