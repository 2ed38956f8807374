//! The records the checks write, each telling where it belongs so a misplaced one shows.

use crate::record::{ActivityTask, Event, HistoryAppend, InstanceRecord, Status, WorkItem};

pub(super) fn record(orchestrator: &str, status: Status, history_len: u32) -> InstanceRecord {
    InstanceRecord {
        version: 1,
        orchestrator: orchestrator.to_owned(),
        input: orchestrator.as_bytes().to_vec(),
        status,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000 + u64::from(history_len),
        history_len,
        incarnation: 1,
        generation: 0,
        custom_status: None,
        parent: None,
    }
}

/// Events `range` of instance `id`, each telling which instance and index it belongs to.
pub(super) fn events(id: &str, range: std::ops::Range<u32>) -> Vec<Event> {
    range
        .map(|index| Event::ActivityCompleted {
            seq: u64::from(index),
            output: format!("{id}#{index}").into_bytes(),
        })
        .collect()
}

pub(super) fn append(id: &str, first: u32, events: Vec<Event>) -> HistoryAppend {
    HistoryAppend {
        instance: id.to_owned(),
        first,
        events,
    }
}

pub(super) fn message(instance: &str, seq: u64) -> WorkItem {
    WorkItem::Message {
        instance: instance.to_owned(),
        incarnation: 1,
        generation: Some(0),
        event: Event::ActivityCompleted {
            seq,
            output: seq.to_be_bytes().to_vec(),
        },
    }
}

pub(super) fn task(instance: &str, seq: u64) -> WorkItem {
    WorkItem::Activity(ActivityTask {
        instance: instance.to_owned(),
        incarnation: 1,
        generation: 0,
        seq,
        key_seq: seq,
        activity: "charge".to_owned(),
        input: vec![1, 2, 3],
        attempt: 1,
        attempt_timeout_ms: Some(500),
    })
}

pub(super) fn timer(instance: &str, seq: u64) -> WorkItem {
    WorkItem::Timer {
        instance: instance.to_owned(),
        incarnation: 1,
        generation: 0,
        seq,
        fire_at_ms: 1_700_000_000_000 + seq,
    }
}

/// A task of `activity` (where [`task`] is one of `charge`).
pub(super) fn task_of(instance: &str, seq: u64, activity: &str) -> WorkItem {
    match task(instance, seq) {
        WorkItem::Activity(mut task) => {
            activity.clone_into(&mut task.activity);
            WorkItem::Activity(task)
        }
        other => other,
    }
}
