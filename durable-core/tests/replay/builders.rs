//! Small event builders and the orchestrators the replay tests run.

use durable_core::record::{Event, Failure, FailureKind};
use durable_core::replay_test::{Command, Turn};
use durable_core::{ActivityContext, OrchestrationContext, activity, orchestrator};
use serde::Serialize;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// `events` without their `EventAwaited` records: a history as written before they
/// existed.
pub fn without_awaits(events: &[Event]) -> Vec<Event> {
    (events.iter())
        .filter(|e| !matches!(e, Event::EventAwaited { .. }))
        .cloned()
        .collect()
}

pub fn started<T: Serialize>(orchestrator: &str, input: &T) -> Event {
    Event::Started {
        orchestrator: orchestrator.to_string(),
        input: encode(input),
    }
}

pub fn completed<T: Serialize>(seq: u64, output: &T) -> Event {
    Event::ActivityCompleted {
        seq,
        output: encode(output),
    }
}

pub fn failed(seq: u64, message: &str) -> Event {
    Event::ActivityFailed {
        seq,
        attempt: 1,
        failure: Failure {
            kind: FailureKind::Returned {
                payload: encode(&message.to_string()),
            },
            message: message.to_string(),
        },
    }
}

/// The activity names of the `ActivityScheduled` events, in order.
pub fn scheduled_names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ActivityScheduled { activity, .. } => Some(activity.clone()),
            _ => None,
        })
        .collect()
}

#[activity]
pub async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n * 2)
}

#[activity]
pub async fn triple(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n * 3)
}

#[activity]
pub async fn undo(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

/// double, then triple.
#[orchestrator]
pub async fn chain(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    let b = ctx.call(triple, a).await?;
    Ok(b)
}

/// An activity a turn scheduled.
#[derive(Debug, PartialEq)]
pub struct Scheduled {
    pub seq: u64,
    pub activity: String,
    pub input: Vec<u8>,
}

/// The activities a turn asks the runtime to run.
pub fn activities(turn: &Turn) -> Vec<Scheduled> {
    turn.commands
        .iter()
        .filter_map(|c| match c {
            Command::ScheduleActivity {
                seq,
                activity,
                input,
                ..
            } => Some(Scheduled {
                seq: *seq,
                activity: activity.clone(),
                input: input.clone(),
            }),
            _ => None,
        })
        .collect()
}
