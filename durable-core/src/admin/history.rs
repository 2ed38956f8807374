//! [`HistoryRow`]s: an instance's history, one row per event, as `durable history` prints
//! it and the instance page lists it.
//!
//! A result event (`ActivityCompleted`, `TimerFired`, ...) names no activity: its row
//! takes the name of the step it ends. Times come from the turn markers
//! ([`Event::TurnStarted`]): each event has the time of the turn that appended it;
//! events of a history written before the markers existed have none.

use std::collections::HashMap;

use durable_store::Event;

use super::json;
use super::view::HistoryRow;

/// The rows of `history`, in order.
pub(crate) fn rows(history: &[Event]) -> Vec<HistoryRow> {
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut at_ms = None;
    let mut rows = Vec::with_capacity(history.len());
    for (index, event) in history.iter().enumerate() {
        if let Event::TurnStarted { at_ms: at } = event {
            at_ms = Some(*at);
        }
        let mut row = row(event);
        row.index = u32::try_from(index).unwrap_or(u32::MAX);
        row.at_ms = at_ms;
        match (row.step, &row.name) {
            (Some(step), Some(name)) => {
                names.entry(step).or_insert_with(|| name.clone());
            }
            (Some(step), None) => row.name = names.get(&step).cloned(),
            _ => {}
        }
        rows.push(row);
    }
    rows
}

/// The name of an entity operation: `@Account@alice.deposit`.
fn entity_operation(entity: &str, operation: &str) -> String {
    format!("{entity}.{operation}")
}

/// The row of one event, its index and time not yet set.
fn row(event: &Event) -> HistoryRow {
    let mut row = HistoryRow {
        index: 0,
        step: None,
        kind: event.kind_name().to_string(),
        name: None,
        outcome: None,
        at_ms: None,
        site: None,
        payload: None,
    };
    let outcome = |o: &str| Some(o.to_string());
    match event {
        Event::Started {
            orchestrator,
            input,
        } => {
            row.name = Some(orchestrator.clone());
            row.payload = json::optional(input);
        }
        Event::ActivityScheduled {
            seq,
            activity,
            input,
            site,
        } => {
            row.step = Some(*seq);
            row.name = Some(activity.clone());
            row.site = Some(json::site(site));
            row.payload = json::optional(input);
        }
        Event::ActivityCompleted { seq, output }
        | Event::SubOrchestrationCompleted { seq, output }
        | Event::EntityCompleted { seq, output } => {
            row.step = Some(*seq);
            row.outcome = outcome("completed");
            row.payload = json::optional(output);
        }
        Event::ActivityFailed {
            seq,
            attempt,
            failure,
        } => {
            row.step = Some(*seq);
            row.outcome = outcome("failed");
            let mut payload = json::failure(failure);
            if let serde_json::Value::Object(object) = &mut payload {
                object.insert("attempt".into(), (*attempt).into());
            }
            row.payload = Some(payload);
        }
        Event::SubOrchestrationFailed { seq, failure } | Event::EntityFailed { seq, failure } => {
            row.step = Some(*seq);
            row.outcome = outcome("failed");
            row.payload = Some(json::failure(failure));
        }
        Event::TimerCreated {
            seq,
            fire_at_ms,
            site,
        } => {
            row.step = Some(*seq);
            row.name = Some("timer".to_string());
            row.site = Some(json::site(site));
            row.payload = Some(serde_json::json!({ "fire_at_ms": fire_at_ms }));
        }
        Event::TimerFired { seq } => {
            row.step = Some(*seq);
            row.outcome = outcome("fired");
        }
        Event::SubOrchestrationScheduled {
            seq,
            orchestrator,
            instance,
            input,
            site,
        } => {
            row.step = Some(*seq);
            row.name = Some(orchestrator.clone());
            row.site = Some(json::site(site));
            row.payload = Some(serde_json::json!({
                "instance": instance,
                "input": json::optional(input),
            }));
        }
        Event::Recorded {
            seq,
            what,
            value,
            site,
        } => {
            row.step = Some(*seq);
            row.name = Some(what.clone());
            row.site = Some(json::site(site));
            row.payload = json::optional(value);
        }
        Event::EventRaised { name, payload } => {
            row.name = Some(name.clone());
            row.payload = json::optional(payload);
        }
        Event::CustomStatusSet { status } => row.payload = json::optional(status),
        Event::Completed { output } => {
            row.outcome = outcome("completed");
            row.payload = json::optional(output);
        }
        Event::Failed { failure } => {
            row.outcome = outcome("failed");
            row.payload = Some(json::failure(failure));
        }
        Event::ContinuedAsNew { input } => {
            row.outcome = outcome("continued_as_new");
            row.payload = json::optional(input);
        }
        Event::TerminateRequested { reason } | Event::SuspendRequested { reason } => {
            row.payload = Some(reason.clone().into());
        }
        Event::ResumeRequested | Event::TurnStarted { .. } => {}
        Event::TraceContext { traceparent, .. } => {
            row.payload = Some(serde_json::json!({ "traceparent": traceparent }));
        }
        Event::EventSetAside {
            name,
            index,
            payload,
            reason,
        } => {
            row.name = Some(name.clone());
            row.outcome = outcome("set_aside");
            row.payload = Some(serde_json::json!({
                "index": index,
                "payload": json::optional(payload),
                "reason": reason,
            }));
        }
        Event::ExecutionDeadline { at_ms } => {
            row.payload = Some(serde_json::json!({ "at_ms": at_ms }));
        }
        Event::ExecutionTimedOut => row.outcome = outcome("timed_out"),
        Event::EventAwaited { name, index, site } => {
            row.name = Some(name.clone());
            row.site = Some(json::site(site));
            row.payload = Some(serde_json::json!({ "index": index }));
        }
        Event::EntityOperation {
            operation,
            input,
            sender,
            at_ms,
        } => {
            row.name = Some(operation.clone());
            row.payload = Some(serde_json::json!({
                "input": json::optional(input),
                "sender": sender,
                "at_ms": at_ms,
            }));
        }
        Event::EntityCalled {
            seq,
            entity,
            operation,
            input,
            site,
        } => {
            row.step = Some(*seq);
            row.name = Some(entity_operation(entity, operation));
            row.site = Some(json::site(site));
            row.payload = json::optional(input);
        }
        Event::EntitySignaled {
            seq,
            entity,
            operation,
            input,
            at_ms,
            site,
        } => {
            row.step = Some(*seq);
            row.name = Some(entity_operation(entity, operation));
            row.site = Some(json::site(site));
            row.payload = Some(serde_json::json!({
                "input": json::optional(input),
                "at_ms": at_ms,
            }));
        }
        Event::EntityCall {
            operation,
            input,
            caller,
        } => {
            row.step = Some(caller.seq);
            row.name = Some(operation.clone());
            row.payload = Some(serde_json::json!({
                "input": json::optional(input),
                "caller": caller.instance,
            }));
        }
        Event::EntityLockRequested {
            seq,
            entities,
            site,
        } => {
            row.step = Some(*seq);
            row.name = Some(format!("lock {}", entities.join(", ")));
            row.site = Some(json::site(site));
            row.payload = Some(serde_json::json!(entities));
        }
        Event::EntityLock {
            owner,
            entities,
            position,
        } => {
            row.step = Some(owner.seq);
            row.payload = Some(serde_json::json!({
                "owner": owner.instance,
                "entities": entities,
                "position": position,
            }));
        }
        Event::EntityLockGranted { seq } => {
            row.step = Some(*seq);
            row.outcome = outcome("granted");
        }
        Event::EntityLocksReleased { lock_seq } => {
            row.step = Some(*lock_seq);
            row.outcome = outcome("released");
        }
        Event::EntityUnlock { owner } => {
            row.step = Some(owner.seq);
            row.payload = Some(serde_json::json!({ "owner": owner.instance }));
        }
    }
    row
}
