//! A durable step: what the code asks for ([`StepRequest`]), what the history keeps of it
//! ([`Step`], compared on replay by its [`StepKind`]) and the result it is given
//! ([`StepResult`]).

use std::time::Duration;

use durable_store::{Event, Failure, Site};

use crate::replay::recorded::Recorded;
use crate::replay::turn::Command;

/// The kind of a durable step, as compared on replay: its kind and name, not its await
/// site (comparing lines would make any edit above a call a breaking change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// An activity call, by the activity's registered name.
    Activity(String),
    /// A durable timer.
    Timer,
    /// A sub-orchestration, by the child orchestrator's registered name.
    SubOrchestration(String),
    /// A recorded value or marker.
    Recorded(Recorded),
    /// A two-way call of operation `operation` of the entity `entity` (its instance id).
    EntityCall { entity: String, operation: String },
    /// A one-way signal of operation `operation` to the entity `entity`.
    EntitySignal { entity: String, operation: String },
    /// A lock request on these entities (instance ids, in lock order).
    EntityLock(Vec<String>),
}

impl StepKind {
    /// The kind of the step `event` records, if it records one.
    pub(crate) fn of(event: &Event) -> Option<Self> {
        Some(match event {
            Event::ActivityScheduled { activity, .. } => Self::Activity(activity.clone()),
            Event::TimerCreated { .. } => Self::Timer,
            Event::SubOrchestrationScheduled { orchestrator, .. } => {
                Self::SubOrchestration(orchestrator.clone())
            }
            Event::Recorded { what, .. } => Self::Recorded(Recorded::parse(what)),
            Event::EntityCalled {
                entity, operation, ..
            } => Self::EntityCall {
                entity: entity.clone(),
                operation: operation.clone(),
            },
            Event::EntitySignaled {
                entity, operation, ..
            } => Self::EntitySignal {
                entity: entity.clone(),
                operation: operation.clone(),
            },
            Event::EntityLockRequested { entities, .. } => Self::EntityLock(entities.clone()),
            _ => return None,
        })
    }
}

/// How a step is named in messages: "activity `pay`", "a recorded `now` value".
impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepKind::Activity(name) => write!(f, "activity `{name}`"),
            StepKind::Timer => write!(f, "a timer"),
            StepKind::SubOrchestration(name) => write!(f, "sub-orchestration `{name}`"),
            StepKind::Recorded(what) => write!(f, "a recorded `{what}` value"),
            StepKind::EntityCall { entity, operation } => {
                write!(f, "a call of operation `{operation}` of entity `{entity}`")
            }
            StepKind::EntitySignal { entity, operation } => {
                write!(
                    f,
                    "a signal of operation `{operation}` to entity `{entity}`"
                )
            }
            StepKind::EntityLock(entities) => {
                write!(f, "a lock on entities [{}]", entities.join(", "))
            }
        }
    }
}

/// Which attempt of a call an activity call is, and what bounds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    /// The step of the call's first attempt, whose idempotency key every attempt shares;
    /// `None` for a first attempt.
    pub(crate) key_seq: Option<u64>,
    /// Which execution of the call this is, 1 for the first.
    pub(crate) number: u32,
    /// The longest one execution may run, from when it starts.
    pub(crate) timeout: Option<Duration>,
}

impl Attempt {
    /// A call's first attempt, without limit.
    pub(crate) const FIRST: Self = Self {
        key_seq: None,
        number: 1,
        timeout: None,
    };
}

/// A durable step the code asks for, with what recording it takes. The step's number is
/// given when it is issued (`ReplayState::issue`).
#[derive(Clone, Debug)]
pub(crate) enum StepRequest {
    /// Run activity `activity` on `input` (encoded).
    Activity {
        activity: String,
        input: Vec<u8>,
        attempt: Attempt,
    },
    /// A timer that fires at `fire_at_ms`, milliseconds since the Unix epoch.
    Timer { fire_at_ms: u64 },
    /// Start version `version` of orchestrator `orchestrator` as instance `instance`, on
    /// `input` (encoded).
    SubOrchestration {
        orchestrator: String,
        version: u32,
        instance: String,
        input: Vec<u8>,
    },
    /// Record `value` (encoded), of kind `kind`.
    Recorded { kind: Recorded, value: Vec<u8> },
    /// Call operation `operation` of the entity `entity` (its instance id) on `input`
    /// (encoded), two-way.
    EntityCall {
        entity: String,
        operation: String,
        input: Vec<u8>,
    },
    /// Signal operation `operation` to the entity `entity` on `input` (encoded), one-way,
    /// at once or not before `at_ms` (milliseconds since the Unix epoch).
    EntitySignal {
        entity: String,
        operation: String,
        input: Vec<u8>,
        at_ms: Option<u64>,
    },
    /// Lock `entities` (instance ids, sorted, no duplicates).
    EntityLock { entities: Vec<String> },
}

impl StepRequest {
    /// The kind it is compared by on replay.
    pub(crate) fn kind(&self) -> StepKind {
        match self {
            Self::Activity { activity, .. } => StepKind::Activity(activity.clone()),
            Self::Timer { .. } => StepKind::Timer,
            Self::SubOrchestration { orchestrator, .. } => {
                StepKind::SubOrchestration(orchestrator.clone())
            }
            Self::Recorded { kind, .. } => StepKind::Recorded(kind.clone()),
            Self::EntityCall {
                entity, operation, ..
            } => StepKind::EntityCall {
                entity: entity.clone(),
                operation: operation.clone(),
            },
            Self::EntitySignal {
                entity, operation, ..
            } => StepKind::EntitySignal {
                entity: entity.clone(),
                operation: operation.clone(),
            },
            Self::EntityLock { entities } => StepKind::EntityLock(entities.clone()),
        }
    }

    /// What the runtime is to do for it as step `seq`; nothing for a recorded value.
    pub(crate) fn command(&self, seq: u64) -> Option<Command> {
        match self {
            Self::Activity {
                activity,
                input,
                attempt,
            } => Some(Command::ScheduleActivity {
                seq,
                activity: activity.clone(),
                input: input.clone(),
                key_seq: attempt.key_seq.unwrap_or(seq),
                attempt: attempt.number,
                // Rounded up: a limit under a millisecond must not become zero.
                attempt_timeout_ms: attempt
                    .timeout
                    .map(|t| u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)),
            }),
            Self::Timer { fire_at_ms } => Some(Command::CreateTimer {
                seq,
                fire_at_ms: *fire_at_ms,
            }),
            Self::SubOrchestration {
                orchestrator,
                version,
                instance,
                input,
            } => Some(Command::StartSubOrchestration {
                seq,
                orchestrator: orchestrator.clone(),
                version: *version,
                instance: instance.clone(),
                input: input.clone(),
            }),
            Self::Recorded { .. } => None,
            Self::EntityCall {
                entity,
                operation,
                input,
            } => Some(Command::CallEntity {
                seq,
                entity: entity.clone(),
                operation: operation.clone(),
                input: input.clone(),
            }),
            Self::EntitySignal {
                entity,
                operation,
                input,
                at_ms,
            } => Some(Command::SignalEntity {
                seq,
                entity: entity.clone(),
                operation: operation.clone(),
                input: input.clone(),
                at_ms: *at_ms,
            }),
            Self::EntityLock { entities } => Some(Command::LockEntities {
                seq,
                entities: entities.clone(),
            }),
        }
    }

    /// The history event that records it as step `seq`, asked for at `site`.
    pub(crate) fn into_event(self, seq: u64, site: Site) -> Event {
        match self {
            Self::Activity {
                activity, input, ..
            } => Event::ActivityScheduled {
                seq,
                activity,
                input,
                site,
            },
            Self::Timer { fire_at_ms } => Event::TimerCreated {
                seq,
                fire_at_ms,
                site,
            },
            Self::SubOrchestration {
                orchestrator,
                instance,
                input,
                ..
            } => Event::SubOrchestrationScheduled {
                seq,
                orchestrator,
                instance,
                input,
                site,
            },
            Self::Recorded { kind, value } => Event::Recorded {
                seq,
                what: kind.what(),
                value,
                site,
            },
            Self::EntityCall {
                entity,
                operation,
                input,
            } => Event::EntityCalled {
                seq,
                entity,
                operation,
                input,
                site,
            },
            Self::EntitySignal {
                entity,
                operation,
                input,
                at_ms,
            } => Event::EntitySignaled {
                seq,
                entity,
                operation,
                input,
                at_ms,
                site,
            },
            Self::EntityLock { entities } => Event::EntityLockRequested {
                seq,
                entities,
                site,
            },
        }
    }
}

/// A durable step as the history records it.
#[derive(Debug)]
pub(in crate::replay) struct Step {
    /// What it is, as compared on replay.
    pub(in crate::replay) kind: StepKind,
    /// Where the code asked for it.
    pub(in crate::replay) site: Site,
    /// Whether its result has arrived (a recorded value is its own result; a signal has
    /// none).
    pub(in crate::replay) done: bool,
    /// The value of a recorded step.
    pub(in crate::replay) value: Option<Vec<u8>>,
    /// The child's instance id of a sub-orchestration step.
    pub(in crate::replay) child: Option<String>,
}

impl Step {
    /// The step `event` records, if it records one.
    pub(in crate::replay) fn of(event: &Event) -> Option<Self> {
        let (Event::ActivityScheduled { site, .. }
        | Event::TimerCreated { site, .. }
        | Event::SubOrchestrationScheduled { site, .. }
        | Event::Recorded { site, .. }
        | Event::EntityCalled { site, .. }
        | Event::EntitySignaled { site, .. }
        | Event::EntityLockRequested { site, .. }) = event
        else {
            return None;
        };
        let value = match event {
            Event::Recorded { value, .. } => Some(value.clone()),
            _ => None,
        };
        // A signal has no result to wait for: done once sent.
        let signal = matches!(event, Event::EntitySignaled { .. });
        let child = match event {
            Event::SubOrchestrationScheduled { instance, .. } => Some(instance.clone()),
            _ => None,
        };
        Some(Self {
            kind: StepKind::of(event)?,
            site: site.clone(),
            done: value.is_some() || signal,
            value,
            child,
        })
    }
}

/// The result of a durable step, as delivered to its future.
#[derive(Clone, Debug)]
pub(crate) enum StepResult {
    /// The encoded output (empty for a timer).
    Ok(Vec<u8>),
    /// The failure of execution `attempt` of the step (1 for a sub-orchestration).
    Err { attempt: u32, failure: Failure },
}
