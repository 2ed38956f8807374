//! The columns written beside each postcard record for people and SQL: kind names and the
//! user payload as JSON.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use crate::record::{Event, FailureKind, InstanceRecord, Status, WorkItem};

/// `bytes` as the text of a `json` column, if they are JSON; `None` (NULL) otherwise.
///
/// durable-core writes every user payload as JSON; only tests write other bytes.
/// PostgreSQL's `json` keeps the text as it is (a NUL escape or a huge number included),
/// so what serde_json accepts it accepts.
pub(super) fn json(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    Some(text)
}

/// `name` as the value of a `text` column, which cannot hold NUL: each NUL shown as U+FFFD
/// (the record keeps the name as it is).
pub(super) fn text(name: &str) -> Cow<'_, str> {
    if name.contains('\0') {
        Cow::Owned(name.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// [`json`] of an optional payload.
fn json_of(bytes: Option<&[u8]>) -> Option<&str> {
    bytes.and_then(json)
}

/// The encoded error value of a failure the user's code returned.
fn failure_payload(kind: &FailureKind) -> Option<&[u8]> {
    match kind {
        FailureKind::Returned { payload } => Some(payload),
        _ => None,
    }
}

/// The `payload` column of a history row: the user payload the event carries.
pub(super) fn event_payload(event: &Event) -> Option<&str> {
    let bytes: Option<&[u8]> = match event {
        Event::Started { input, .. }
        | Event::ActivityScheduled { input, .. }
        | Event::SubOrchestrationScheduled { input, .. }
        | Event::ContinuedAsNew { input }
        | Event::EntityOperation { input, .. }
        | Event::EntityCalled { input, .. }
        | Event::EntitySignaled { input, .. }
        | Event::EntityCall { input, .. } => Some(input),
        Event::ActivityCompleted { output, .. }
        | Event::SubOrchestrationCompleted { output, .. }
        | Event::EntityCompleted { output, .. }
        | Event::Completed { output } => Some(output),
        Event::Recorded { value, .. } => Some(value),
        Event::EventRaised { payload, .. } | Event::EventSetAside { payload, .. } => Some(payload),
        Event::CustomStatusSet { status } => Some(status),
        Event::ActivityFailed { failure, .. }
        | Event::SubOrchestrationFailed { failure, .. }
        | Event::EntityFailed { failure, .. }
        | Event::Failed { failure } => failure_payload(&failure.kind),
        Event::TimerCreated { .. }
        | Event::TimerFired { .. }
        | Event::TerminateRequested { .. }
        | Event::SuspendRequested { .. }
        | Event::ResumeRequested
        | Event::EntityLockRequested { .. }
        | Event::EntityLock { .. }
        | Event::EntityLockGranted { .. }
        | Event::EntityLocksReleased { .. }
        | Event::EntityUnlock { .. }
        | Event::TurnStarted { .. }
        | Event::TraceContext { .. }
        | Event::EventAwaited { .. }
        | Event::ExecutionDeadline { .. }
        | Event::ExecutionTimedOut => None,
    };
    json_of(bytes)
}

/// The `output` column of an instance row: its output once completed, the error value it
/// returned once failed.
pub(super) fn instance_output(record: &InstanceRecord) -> Option<&str> {
    json_of(match &record.status {
        Status::Completed { output } => Some(output),
        Status::Failed { failure } | Status::Stalled { failure } => failure_payload(&failure.kind),
        Status::Pending
        | Status::Running
        | Status::Terminated { .. }
        | Status::Suspended { .. }
        | Status::DeadLettered { .. } => None,
    })
}

/// The `kind` and `payload` columns of a work row.
pub(super) fn work_columns(item: &WorkItem) -> (&'static str, &str, Option<&str>) {
    match item {
        WorkItem::Message {
            instance, event, ..
        } => ("message", instance, event_payload(event)),
        WorkItem::Activity(task) => ("activity", &task.instance, json(&task.input)),
        WorkItem::Timer { instance, .. } => ("timer", instance, None),
    }
}
