//! [`InstanceDetail`]: everything about one instance, as `durable show` prints it and the
//! instance page shows it. Its pending work comes from [`Position`] and the history, its
//! timeline from the history alone (see [`timeline`]); a delayed start's time from its
//! timer in the work queue.

use std::collections::HashMap;

use durable_store::{Event, InstanceRecord, Site, Status, Store, WorkItem};

use super::json;
use super::listing;
use super::view::{
    ChildView, FailureView, InstanceDetail, PendingActivity, PendingTimer, PendingWork, StepView,
    TimelineRow,
};
use crate::client::Client;
use crate::error::Error;
use crate::position::Position;
use crate::runtime::entities::is_entity;
use crate::runtime::timer_arming::START_SEQ;

/// The detail of orchestration instance `id`; `None` if there is none.
pub(super) fn detail(client: &Client, id: &str) -> Result<Option<InstanceDetail>, Error> {
    let store = client.engine.store();
    let Some(record) = store.instance(id)? else {
        return Ok(None);
    };
    if is_entity(id, &record) {
        return Ok(None);
    }
    let history = store.history(id)?;
    let summary = listing::row(store, id, &record, Some(&history))?;
    let (output, error) = match &record.status {
        Status::Completed { output } => (json::optional(output), None),
        Status::Failed { failure } | Status::Stalled { failure } => {
            (None, Some(json::failure_view(failure)))
        }
        Status::Terminated { reason } => (
            None,
            Some(FailureView {
                kind: "terminated".to_string(),
                message: reason.clone(),
            }),
        ),
        Status::Pending
        | Status::Running
        | Status::Suspended { .. }
        | Status::DeadLettered { .. } => (None, None),
    };
    let mut children = Vec::new();
    for event in &history {
        if let Event::SubOrchestrationScheduled {
            seq,
            orchestrator,
            instance,
            ..
        } = event
        {
            children.push(ChildView {
                id: instance.clone(),
                orchestrator: orchestrator.clone(),
                step: *seq,
                status: (store.instance(instance)?)
                    .map(|child| child.status.kind().as_str().to_string()),
            });
        }
    }
    let timeline = timeline(&history);
    let pending = if record.status.is_terminal() {
        PendingWork::default()
    } else {
        pending(&history, &timeline)
    };
    let starts_at_ms = starts_at(store, id, &record, &history)?;
    let deadline_ms = history.iter().rev().find_map(|event| match event {
        Event::ExecutionDeadline { at_ms } => Some(*at_ms),
        _ => None,
    });
    Ok(Some(InstanceDetail {
        summary,
        generation: record.generation,
        starts_at_ms,
        deadline_ms,
        input: json::optional(&record.input),
        output,
        error,
        parent: record.parent.map(|parent| parent.instance),
        children,
        pending,
        timeline,
    }))
}

/// When the delayed start of instance `id` (its `record` and `history`) runs its first
/// turn, if it is pending and has not started: the time of its start timer. Scans the
/// work queue, for a pending instance only.
fn starts_at(
    store: &dyn Store,
    id: &str,
    record: &InstanceRecord,
    history: &[Event],
) -> Result<Option<u64>, Error> {
    let started = history
        .iter()
        .any(|event| matches!(event, Event::Started { .. }));
    if record.status != Status::Pending || started {
        return Ok(None);
    }
    Ok(store
        .work_items()?
        .into_iter()
        .find_map(|(_, item)| match item {
            WorkItem::Timer {
                instance,
                incarnation,
                seq: START_SEQ,
                fire_at_ms,
                ..
            } if instance == id && incarnation == record.incarnation => Some(fire_at_ms),
            _ => None,
        }))
}

/// What the instance at the end of `history` waits for: the steps [`Position`] lists as
/// awaited, with what the history says of each (an activity's attempt from `timeline`).
pub(crate) fn pending(history: &[Event], timeline: &[TimelineRow]) -> PendingWork {
    let mut work = PendingWork::default();
    let attempts: HashMap<u64, u32> = (timeline.iter())
        .filter_map(|row| Some((row.step?, row.attempts)))
        .collect();
    let issued: HashMap<u64, &Event> = (history.iter())
        .filter_map(|event| Some((issued_step(event)?, event)))
        .collect();
    for step in Position::of(history).awaiting {
        match issued.get(&step.step) {
            Some(Event::ActivityScheduled {
                seq,
                activity,
                site,
                ..
            }) => work.activities.push(PendingActivity {
                step: *seq,
                activity: activity.clone(),
                attempt: attempts.get(seq).copied().unwrap_or(1),
                site: json::site(site),
            }),
            Some(Event::TimerCreated {
                seq,
                fire_at_ms,
                site,
            }) => work.timers.push(PendingTimer {
                step: *seq,
                fire_at_ms: *fire_at_ms,
                site: json::site(site),
            }),
            Some(Event::SubOrchestrationScheduled { .. }) => {
                work.sub_orchestrations.push(StepView {
                    step: step.step,
                    operation: step.operation,
                    site: json::site(&step.site),
                });
            }
            _ => {}
        }
    }
    // The event waits the history records whose event has not arrived.
    for row in timeline {
        if row.kind == "event" && row.outcome == "pending" && !work.events.contains(&row.name) {
            work.events.push(row.name.clone());
        }
    }
    work
}

/// The step `event` issues, if it issues one.
fn issued_step(event: &Event) -> Option<u64> {
    match event {
        Event::ActivityScheduled { seq, .. }
        | Event::TimerCreated { seq, .. }
        | Event::SubOrchestrationScheduled { seq, .. }
        | Event::EntityCalled { seq, .. }
        | Event::EntityLockRequested { seq, .. } => Some(*seq),
        _ => None,
    }
}

/// The timeline of `history`: one row per activity, timer, sub-orchestration, entity
/// call or lock, in the order issued, from the time of the turn that issued it to the
/// time of the turn that took its result (times from the [`Event::TurnStarted`]
/// markers; none in a history written before them).
///
/// An event wait ([`Event::EventAwaited`]) is a row of kind `event`, from the turn that
/// began it to the turn its event (the `EventRaised` of the same name and index) arrived
/// in; `set_aside` if that event was set aside (the wait went on, for the next one).
/// A wait the code dropped before its event arrived (it lost a race with a timeout)
/// stays `pending`, as the history does not record the drop; a new wait that then waits
/// for the same event (the same name and index) is the same row, with the first wait's
/// time and site.
///
/// A retry is a new step calling the same activity from the same site after the
/// previous call failed: its row counts the attempt (the failed attempt's number plus
/// one), and a failure's row takes the attempt number the failure records.
pub(crate) fn timeline(history: &[Event]) -> Vec<TimelineRow> {
    let mut rows: Vec<TimelineRow> = Vec::new();
    let mut by_step: HashMap<u64, usize> = HashMap::new();
    // The attempt of the last failed call of an activity from a site.
    let mut failed: HashMap<(String, String, u32), u32> = HashMap::new();
    let mut at = None;
    // Event waits, by (name, index), and how many events of each name were raised.
    let mut waits: HashMap<(&str, u32), usize> = HashMap::new();
    let mut raised: HashMap<&str, u32> = HashMap::new();
    let retry_key =
        |activity: &str, site: &Site| (activity.to_string(), site.file.clone(), site.line);
    for event in history {
        let mut issue = |kind: &str, name: String, seq: u64, site: &Site, attempts: u32| {
            by_step.insert(seq, rows.len());
            rows.push(TimelineRow {
                kind: kind.to_string(),
                name,
                step: Some(seq),
                started_at_ms: at,
                ended_at_ms: None,
                outcome: "pending".to_string(),
                attempts,
                site: Some(json::site(site)),
            });
        };
        match event {
            Event::TurnStarted { at_ms } => at = Some(*at_ms),
            Event::EventAwaited { name, index, site } => {
                waits.insert((name.as_str(), *index), rows.len());
                rows.push(TimelineRow {
                    kind: "event".to_string(),
                    name: name.clone(),
                    step: None,
                    started_at_ms: at,
                    ended_at_ms: None,
                    outcome: "pending".to_string(),
                    attempts: 1,
                    site: Some(json::site(site)),
                });
            }
            Event::EventRaised { name, .. } => {
                let count = raised.entry(name.as_str()).or_default();
                let index = *count;
                *count += 1;
                if let Some(&i) = waits.get(&(name.as_str(), index)) {
                    rows[i].ended_at_ms = at;
                    rows[i].outcome = "completed".to_string();
                }
            }
            Event::EventSetAside { name, index, .. } => {
                if let Some(&i) = waits.get(&(name.as_str(), *index)) {
                    rows[i].outcome = "set_aside".to_string();
                }
            }
            Event::ActivityScheduled {
                seq,
                activity,
                site,
                ..
            } => {
                let attempts = failed
                    .remove(&retry_key(activity, site))
                    .map_or(1, |attempt| attempt + 1);
                issue("activity", activity.clone(), *seq, site, attempts);
            }
            Event::TimerCreated { seq, site, .. } => issue("timer", "timer".into(), *seq, site, 1),
            Event::SubOrchestrationScheduled {
                seq,
                orchestrator,
                site,
                ..
            } => issue("sub-orchestration", orchestrator.clone(), *seq, site, 1),
            Event::EntityCalled {
                seq,
                entity,
                operation,
                site,
                ..
            } => issue("entity", format!("{entity}.{operation}"), *seq, site, 1),
            Event::EntityLockRequested {
                seq,
                entities,
                site,
            } => issue(
                "entity",
                format!("lock {}", entities.join(", ")),
                *seq,
                site,
                1,
            ),
            _ => {
                let Some((seq, outcome)) = ended(event) else {
                    continue;
                };
                let Some(row) = by_step.get(&seq).map(|&i| &mut rows[i]) else {
                    continue;
                };
                row.ended_at_ms = at;
                row.outcome = outcome.to_string();
                if let Event::ActivityFailed { attempt, .. } = event {
                    row.attempts = (*attempt).max(1);
                    if let Some(site) = &row.site {
                        failed.insert((row.name.clone(), site.file.clone(), site.line), *attempt);
                    }
                }
            }
        }
    }
    rows
}

/// The step `event` ends, and how.
fn ended(event: &Event) -> Option<(u64, &'static str)> {
    Some(match event {
        Event::ActivityCompleted { seq, .. }
        | Event::SubOrchestrationCompleted { seq, .. }
        | Event::EntityCompleted { seq, .. }
        | Event::EntityLockGranted { seq } => (*seq, "completed"),
        Event::ActivityFailed { seq, .. }
        | Event::SubOrchestrationFailed { seq, .. }
        | Event::EntityFailed { seq, .. } => (*seq, "failed"),
        Event::TimerFired { seq } => (*seq, "fired"),
        _ => return None,
    })
}
