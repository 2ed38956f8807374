//! The typed records the engine persists. Every one is encoded with postcard.
//!
//! The user payloads they carry (the `Vec<u8>` fields documented as encoded: inputs,
//! outputs, event payloads, recorded values, error values, custom status) are JSON,
//! written by durable-core; `durable_core::payload_to_json` reads any of them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, cause};
use crate::lease::CommitLease;

mod event;

pub use event::Event;

/// Identifies a work item in the store's queue. Allocated by the runtime in increasing order.
pub type WorkId = u64;

/// Identifies one run of an instance id: drawn at random when the id is started, restarted
/// or given to a new instance after a purge, and kept across continue-as-new (whose
/// generations [`InstanceRecord::generation`] counts). Every delivery for the instance (an
/// activity result, a timer, a child's completion, a client's event or request) carries
/// the incarnation it was issued for, and is dropped on arrival at any other: nothing
/// addressed to one run of an id reaches another. 64 random bits, never 0, and a new run
/// of an id never reuses the incarnation of the run it replaces.
pub type Incarnation = u64;

/// Where in the orchestrator's code a durable operation was issued.
///
/// `function` and `line_offset` (the line counted from the orchestrator's `fn`) identify the
/// await site for replay checks, so edits above the orchestrator do not change it; `file`
/// and `line` are kept to point the user at the code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The orchestrator function the operation was issued from.
    pub function: String,
    /// Source file of the call.
    pub file: String,
    /// Line of the call in `file`.
    pub line: u32,
    /// Line of the call counted from the line of the orchestrator's `fn`.
    pub line_offset: i64,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} in `{}`", self.file, self.line, self.function)
    }
}

/// Why an activity or an orchestration failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The user's code returned `Err`; `payload` is the JSON encoding of the error value.
    Returned {
        /// The encoded error value.
        payload: Vec<u8>,
    },
    /// The user's code panicked.
    Panicked,
    /// A stored payload no longer decodes as the type the code expects.
    Decode {
        /// The Rust type the payload was decoded as.
        type_name: String,
    },
    /// The orchestrator took a different path than its history records.
    Nondeterminism,
    /// A durable timeout elapsed before the operation finished.
    TimedOut,
    /// A client terminated the instance.
    Terminated,
    /// The operation could not start (for example, a sub-orchestration's instance id is
    /// taken).
    Rejected,
    /// The orchestrator or activity name is not registered with the runtime.
    Unregistered {
        /// The name that was looked up.
        name: String,
    },
    /// A payload was larger than the runtime's limit
    /// (`RuntimeBuilder::max_payload_bytes`).
    TooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
}

/// A failure stored in history and in the instance status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// A human-readable message (the `Display` of the error, the panic message, ...).
    pub message: String,
}

/// The lifecycle state of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Created; its first turn has not run yet.
    Pending,
    /// Started and not finished.
    Running,
    /// Finished with an output.
    Completed {
        /// Encoded output.
        output: Vec<u8>,
    },
    /// Finished with a failure.
    Failed {
        /// What went wrong.
        failure: Failure,
    },
    /// Stopped because its code no longer replays its history, a stored payload no longer
    /// decodes as its type, or its code is not registered.
    /// The history is kept: once fixed code is deployed, the instance resumes on restart.
    Stalled {
        /// What went wrong.
        failure: Failure,
    },
    /// Stopped by a client before it finished.
    Terminated {
        /// Why, as the client said.
        reason: String,
    },
    /// Paused by a client: events are kept and applied once it is resumed.
    Suspended {
        /// Why, as the client said.
        reason: String,
    },
    /// Parked by the runtime after its work crashed the worker at too many recoveries in a
    /// row (its start's or the runtime's `max_recoveries`): its activity tasks and events
    /// are kept and run once a client resumes it, as for [`Status::Suspended`]. (Appended
    /// last: records written before it existed decode as they were.)
    DeadLettered {
        /// Why, as the runtime said: the recoveries counted and the limit.
        reason: String,
    },
}

impl Status {
    /// Whether the instance has finished for good.
    pub fn is_terminal(&self) -> bool {
        self.kind().is_terminal()
    }

    /// Whether its work waits for a client's resume: suspended or dead-lettered (events
    /// and results are kept, not applied, until then).
    pub fn waits_for_resume(&self) -> bool {
        matches!(self, Status::Suspended { .. } | Status::DeadLettered { .. })
    }

    /// The status without its data: what queries and filters name.
    pub fn kind(&self) -> StatusKind {
        match self {
            Status::Pending => StatusKind::Pending,
            Status::Running => StatusKind::Running,
            Status::Completed { .. } => StatusKind::Completed,
            Status::Failed { .. } => StatusKind::Failed,
            Status::Stalled { .. } => StatusKind::Stalled,
            Status::Terminated { .. } => StatusKind::Terminated,
            Status::Suspended { .. } => StatusKind::Suspended,
            Status::DeadLettered { .. } => StatusKind::DeadLettered,
        }
    }

    /// The status's name: `pending`, `running`, `completed`, `failed`, `stalled`,
    /// `terminated`, `suspended` or `dead-lettered` (the [`StatusKind::as_str`] of its
    /// [`kind`](Self::kind)).
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// Which [`Status`] an instance has, without the status's data (output, failure,
/// reason): one variant per variant of [`Status`]. Queries and filters name statuses
/// with it, so a misspelt status does not compile instead of matching nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StatusKind {
    /// [`Status::Pending`].
    Pending,
    /// [`Status::Running`].
    Running,
    /// [`Status::Completed`].
    Completed,
    /// [`Status::Failed`].
    Failed,
    /// [`Status::Stalled`].
    Stalled,
    /// [`Status::Terminated`].
    Terminated,
    /// [`Status::Suspended`].
    Suspended,
    /// [`Status::DeadLettered`].
    DeadLettered,
}

impl StatusKind {
    /// Every kind, in lifecycle order (dead-lettered, added later, last).
    pub const ALL: [StatusKind; 8] = [
        StatusKind::Pending,
        StatusKind::Running,
        StatusKind::Completed,
        StatusKind::Failed,
        StatusKind::Stalled,
        StatusKind::Terminated,
        StatusKind::Suspended,
        StatusKind::DeadLettered,
    ];

    /// The kind's name: `pending`, `running`, `completed`, `failed`, `stalled`,
    /// `terminated`, `suspended` or `dead-lettered`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StatusKind::Pending => "pending",
            StatusKind::Running => "running",
            StatusKind::Completed => "completed",
            StatusKind::Failed => "failed",
            StatusKind::Stalled => "stalled",
            StatusKind::Terminated => "terminated",
            StatusKind::Suspended => "suspended",
            StatusKind::DeadLettered => "dead-lettered",
        }
    }

    /// Whether an instance of this kind has finished for good (completed, failed or
    /// terminated), as [`Status::is_terminal`].
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            StatusKind::Completed | StatusKind::Failed | StatusKind::Terminated
        )
    }
}

impl std::fmt::Display for StatusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parent step a sub-orchestration reports its result to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent instance.
    pub instance: String,
    /// The parent's incarnation that started the child.
    pub incarnation: Incarnation,
    /// The parent's generation that started the child.
    pub generation: u32,
    /// The parent's step.
    pub seq: u64,
}

/// The stored record of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Registered name of the orchestrator.
    pub orchestrator: String,
    /// The orchestrator's version the instance runs (it keeps the one it started with).
    pub version: u32,
    /// Encoded input it was started with.
    pub input: Vec<u8>,
    /// Current state.
    pub status: Status,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Last update time, milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// Number of events in the history.
    pub history_len: u32,
    /// This run of the instance id (see [`Incarnation`]).
    pub incarnation: Incarnation,
    /// How many times this incarnation continued as new (its history restarts each time).
    pub generation: u32,
    /// The encoded custom status the orchestrator last set.
    pub custom_status: Option<Vec<u8>>,
    /// For a sub-orchestration, the parent step it reports to.
    pub parent: Option<ParentLink>,
}

impl InstanceRecord {
    /// A new instance of version `version` of `orchestrator`, pending its first turn, as
    /// run `incarnation` of its id.
    pub fn pending(
        orchestrator: String,
        version: u32,
        input: Vec<u8>,
        now_ms: u64,
        incarnation: Incarnation,
        parent: Option<ParentLink>,
    ) -> Self {
        Self {
            orchestrator,
            version,
            input,
            status: Status::Pending,
            created_ms: now_ms,
            updated_ms: now_ms,
            history_len: 0,
            incarnation,
            generation: 0,
            custom_status: None,
            parent,
        }
    }
}

/// An activity invocation waiting to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityTask {
    /// Instance that scheduled it.
    pub instance: String,
    /// The instance's incarnation that scheduled it.
    pub incarnation: Incarnation,
    /// The instance's generation that scheduled it.
    pub generation: u32,
    /// Step of the instance it belongs to.
    pub seq: u64,
    /// The step whose idempotency key it uses: its own, or the first attempt's of a retry.
    pub key_seq: u64,
    /// Registered name of the activity.
    pub activity: String,
    /// Encoded input.
    pub input: Vec<u8>,
    /// Which execution of its call this is, 1 for the first: a retry follows on from the
    /// execution that failed, and a redelivery after a crash raises it, so every
    /// execution counts once. A task stored at a graceful shutdown before it ever started
    /// holds one less (0 for a first attempt), which the next start's redelivery raises.
    pub attempt: u32,
    /// The longest one execution may run, in milliseconds, from when it starts (Temporal's
    /// start-to-close timeout); `None` for no limit. An execution still running then is
    /// cancelled and fails as timed out.
    pub attempt_timeout_ms: Option<u64>,
}

/// An entry of the work queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkItem {
    /// A new event for an instance (its start, an activity result, ...).
    Message {
        /// Instance the event is for.
        instance: String,
        /// The incarnation it is for: it is dropped on arrival at any other.
        incarnation: Incarnation,
        /// The generation it is for; `None` for any generation of the incarnation (client
        /// requests, external events).
        generation: Option<u32>,
        /// The event to append to its history in its next turn.
        event: Event,
    },
    /// An activity to run.
    Activity(ActivityTask),
    /// A durable timer; when it fires it is delivered as `TimerFired` to its instance.
    Timer {
        /// Instance that created it.
        instance: String,
        /// The instance's incarnation that created it.
        incarnation: Incarnation,
        /// The instance's generation that created it.
        generation: u32,
        /// Step of the timer.
        seq: u64,
        /// When it fires, milliseconds since the Unix epoch.
        fire_at_ms: u64,
    },
}

/// Events appended to one instance's history, starting at index `first`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryAppend {
    /// Instance whose history grows.
    pub instance: String,
    /// Index of the first appended event (the history length before the append).
    pub first: u32,
    /// The events, in order.
    pub events: Vec<Event>,
}

/// Everything one step of the engine writes: applied atomically, all or nothing.
///
/// An orchestration turn is one `Commit` (history delta, consumed messages, new work, the
/// instance record); so is an activity result (task removed, message to its instance added).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// Histories to remove, as (instance, history length), before this commit's appends:
    /// continue-as-new restarts a history, a purge removes one.
    pub histories_removed: Vec<(String, u32)>,
    /// Instance records to remove (purge).
    pub instances_removed: Vec<String>,
    /// Instance records to write (insert or replace).
    pub instances: Vec<(String, InstanceRecord)>,
    /// History appended.
    pub history: Vec<HistoryAppend>,
    /// Work items to delete (acknowledged).
    pub dequeued: Vec<WorkId>,
    /// Work items to add.
    pub enqueued: Vec<(WorkId, WorkItem)>,
    /// Activity progress checkpoints to write (`Some`) or delete (`None`), by key.
    pub progress: Vec<(String, Option<Vec<u8>>)>,
    /// The lease the commit is written under, which the store checks (see
    /// [`crate::lease`]); `None` for a commit no worker writes (a tool's, a test's): it
    /// is not fenced, and every item it enqueues is left for a claim.
    pub lease: Option<CommitLease>,
    /// Instances the commit expects to find as its writer read them: in the given
    /// incarnation, or absent (`None`). The store refuses the commit whole
    /// ([`StoreError::InstanceChanged`]) if one is not: another client or worker started,
    /// restarted or purged it since. A start expects its id absent; a restart or a purge
    /// the incarnation it read.
    pub expected: Vec<(String, Option<Incarnation>)>,
}

impl Commit {
    /// Whether the commit writes nothing.
    pub fn is_empty(&self) -> bool {
        self.histories_removed.is_empty()
            && self.instances_removed.is_empty()
            && self.instances.is_empty()
            && self.history.is_empty()
            && self.dequeued.is_empty()
            && self.enqueued.is_empty()
            && self.progress.is_empty()
    }
}

/// Decodes a stored record (postcard); `what` names it for the error.
///
/// # Errors
///
/// [`StoreError::Decode`] naming `what`, with postcard's error as its cause.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        what: what(),
        detail: e.to_string(),
        source: cause(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statuses are stored by their variant's index: a status added later goes last, so
    /// every record written before it decodes as it was.
    #[test]
    fn statuses_keep_their_stored_index() {
        let reason = || "r".to_string();
        let suspended = postcard::to_allocvec(&Status::Suspended { reason: reason() }).unwrap();
        assert_eq!(suspended[0], 6);
        let parked = Status::DeadLettered { reason: reason() };
        let bytes = postcard::to_allocvec(&parked).unwrap();
        assert_eq!(bytes[0], 7);
        assert_eq!(
            decode::<Status>(&bytes, || "status".into()).unwrap(),
            parked
        );
        assert_eq!(parked.name(), "dead-lettered");
        assert!(parked.waits_for_resume() && !parked.is_terminal());
        assert_eq!(StatusKind::ALL.last(), Some(&StatusKind::DeadLettered));
    }
}
