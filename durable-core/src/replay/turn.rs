//! What a turn of the replay step produces: the [`Turn`], with the [`Command`]s for the
//! runtime and the instance's [`Outcome`].

use durable_store::{Event, Failure};

/// What the turn asks the runtime to do. More kinds come with new durable operations.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Run an activity.
    ScheduleActivity {
        /// Step number.
        seq: u64,
        /// Registered activity name.
        activity: String,
        /// Encoded input.
        input: Vec<u8>,
        /// The step whose idempotency key the call uses (itself, or the first attempt of a
        /// retried call).
        key_seq: u64,
        /// The attempt this call is (1 unless it is a retry).
        attempt: u32,
        /// The longest one execution may run, in milliseconds (start-to-close); `None`
        /// for no limit.
        attempt_timeout_ms: Option<u64>,
    },
    /// Set a durable timer.
    CreateTimer {
        /// Step number.
        seq: u64,
        /// When it fires, milliseconds since the Unix epoch.
        fire_at_ms: u64,
    },
    /// Start a sub-orchestration.
    StartSubOrchestration {
        /// Step number.
        seq: u64,
        /// Registered name of the child orchestrator.
        orchestrator: String,
        /// The child orchestrator's version.
        version: u32,
        /// Instance id of the child.
        instance: String,
        /// Encoded input.
        input: Vec<u8>,
    },
    /// Send a two-way call to an entity: an `EntityCall` message, whose caller is this
    /// run of the instance and step `seq`.
    CallEntity {
        /// Step number.
        seq: u64,
        /// The entity's instance id (`@Name@key`).
        entity: String,
        /// The operation's name.
        operation: String,
        /// Encoded input.
        input: Vec<u8>,
    },
    /// Send a one-way signal to an entity: an `EntityOperation` message whose sender is
    /// this instance.
    SignalEntity {
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
    },
    /// Ask for the locks of `entities`: an `EntityLock` message to the first, owned by
    /// this run of the instance and step `seq`.
    LockEntities {
        /// The lock request's step.
        seq: u64,
        /// The entities' instance ids, sorted, no duplicates.
        entities: Vec<String>,
    },
    /// Release the locks of the lock request of step `lock_seq`: an `EntityUnlock`
    /// message to each of `entities`.
    UnlockEntities {
        /// The lock request's step.
        lock_seq: u64,
        /// The entities of the request.
        entities: Vec<String>,
    },
}

/// Where the instance stands after a turn.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Waiting for results of durable operations.
    Running,
    /// The orchestrator returned `Ok` with this encoded output.
    Completed(Vec<u8>),
    /// The orchestrator returned `Err` or panicked, or a payload it made is over the limit.
    Failed(Failure),
    /// The orchestrator continues as new: its history restarts with this encoded input.
    ContinuedAsNew {
        /// The next generation's input.
        input: Vec<u8>,
        /// Whether the next generation moves to the newest registered version.
        latest_version: bool,
        /// External events this generation received and did not take, in the order they
        /// arrived: raised again to the next generation, so none is lost.
        events: Vec<CarriedEvent>,
    },
    /// The code does not replay the history, or a payload does not decode as its type.
    /// Nothing of the turn may be committed: the history and the new events stay as they
    /// are until fixed code is deployed.
    Stalled(Failure),
}

/// What one turn produced.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Turn {
    /// Events to append to the history: the new events fed in, then those the code emitted.
    pub appended: Vec<Event>,
    /// What the runtime is to do.
    pub commands: Vec<Command>,
    /// The custom status, if the orchestrator set it this turn (not on replay: the
    /// statuses of replayed turns are already stored).
    pub custom_status: Option<Vec<u8>>,
    /// The instance's state after the turn.
    pub outcome: Outcome,
}

/// An external event a generation received and did not take, raised again to the next
/// generation when the instance continues as new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarriedEvent {
    /// The event's name.
    pub name: String,
    /// Its encoded payload.
    pub payload: Vec<u8>,
}
