//! The timeline and pending work over histories built by hand: each step from its turn
//! to its result, retries marked, event waits from their turn to their event.

use durable_store::Event;
use serde_json::json;

use super::super::detail::{pending, timeline};
use super::{bytes, failure, site};

fn scheduled(seq: u64, activity: &str, line: u32) -> Event {
    Event::ActivityScheduled {
        seq,
        activity: activity.into(),
        input: bytes(json!(1)),
        site: site(line),
    }
}

#[test]
fn the_timeline_spans_each_step_from_its_turn_to_its_result_and_marks_retries() {
    let history = vec![
        Event::TurnStarted { at_ms: 100 },
        Event::Started {
            orchestrator: "order".into(),
            input: bytes(json!(1)),
        },
        scheduled(0, "pay", 10),
        Event::TurnStarted { at_ms: 200 },
        Event::ActivityFailed {
            seq: 0,
            attempt: 1,
            failure: failure("declined"),
        },
        Event::TimerCreated {
            seq: 1,
            fire_at_ms: 300,
            site: site(10),
        },
        Event::TurnStarted { at_ms: 300 },
        Event::TimerFired { seq: 1 },
        scheduled(2, "pay", 10),
        Event::TurnStarted { at_ms: 400 },
        Event::ActivityCompleted {
            seq: 2,
            output: bytes(json!(1)),
        },
        scheduled(3, "ship", 11),
        Event::TimerCreated {
            seq: 4,
            fire_at_ms: 900,
            site: site(12),
        },
    ];
    let rows = timeline(&history);
    let brief: Vec<_> = (rows.iter())
        .map(|r| {
            (
                r.kind.as_str(),
                r.name.as_str(),
                r.step,
                r.started_at_ms,
                r.ended_at_ms,
                r.outcome.as_str(),
                r.attempts,
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            (
                "activity",
                "pay",
                Some(0),
                Some(100),
                Some(200),
                "failed",
                1
            ),
            ("timer", "timer", Some(1), Some(200), Some(300), "fired", 1),
            (
                "activity",
                "pay",
                Some(2),
                Some(300),
                Some(400),
                "completed",
                2
            ),
            ("activity", "ship", Some(3), Some(400), None, "pending", 1),
            ("timer", "timer", Some(4), Some(400), None, "pending", 1),
        ]
    );
    let work = pending(&history, &rows);
    assert_eq!(work.activities.len(), 1);
    assert_eq!(
        (
            work.activities[0].step,
            work.activities[0].activity.as_str()
        ),
        (3, "ship")
    );
    assert_eq!(work.activities[0].attempt, 1);
    assert_eq!(work.timers.len(), 1);
    assert_eq!((work.timers[0].step, work.timers[0].fire_at_ms), (4, 900));
    assert!(work.sub_orchestrations.is_empty());
}

fn raised(name: &str, value: serde_json::Value) -> Event {
    Event::EventRaised {
        name: name.into(),
        payload: bytes(value),
    }
}

fn awaited(name: &str, index: u32, line: u32) -> Event {
    Event::EventAwaited {
        name: name.into(),
        index,
        site: site(line),
    }
}

#[test]
fn an_event_wait_is_a_timeline_row_from_its_turn_to_its_event_and_pending_until_then() {
    let history = vec![
        Event::TurnStarted { at_ms: 100 },
        Event::Started {
            orchestrator: "order".into(),
            input: bytes(json!(1)),
        },
        // An event of another name no one waits for, then the first wait.
        raised("note", json!("hi")),
        awaited("approve", 0, 20),
        Event::TurnStarted { at_ms: 200 },
        raised("approve", json!("yes")),
        Event::EventSetAside {
            name: "approve".into(),
            index: 0,
            payload: bytes(json!("yes")),
            reason: "expected a boolean".into(),
        },
        awaited("approve", 1, 20),
        Event::TurnStarted { at_ms: 300 },
        raised("approve", json!(true)),
        awaited("approve", 2, 21),
        awaited("paid", 0, 22),
    ];
    let rows = timeline(&history);
    let brief: Vec<_> = (rows.iter())
        .map(|r| {
            (
                r.kind.as_str(),
                r.name.as_str(),
                r.step,
                r.started_at_ms,
                r.ended_at_ms,
                r.outcome.as_str(),
                r.site.as_ref().map(|s| s.line),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            (
                "event",
                "approve",
                None,
                Some(100),
                Some(200),
                "set_aside",
                Some(20)
            ),
            (
                "event",
                "approve",
                None,
                Some(200),
                Some(300),
                "completed",
                Some(20)
            ),
            (
                "event",
                "approve",
                None,
                Some(300),
                None,
                "pending",
                Some(21)
            ),
            ("event", "paid", None, Some(300), None, "pending", Some(22)),
        ]
    );
    let work = pending(&history, &rows);
    assert_eq!(work.events, ["approve", "paid"]);
    assert!(work.activities.is_empty() && work.timers.is_empty());

    // Once the events arrive, nothing is awaited.
    let mut done = history;
    done.extend([
        Event::TurnStarted { at_ms: 400 },
        raised("paid", json!(1)),
        raised("approve", json!(true)),
    ]);
    let rows = timeline(&done);
    assert!(rows.iter().all(|r| r.outcome != "pending"), "{rows:?}");
    assert_eq!(
        (rows[3].ended_at_ms, rows[3].outcome.as_str()),
        (Some(400), "completed")
    );
    assert!(pending(&done, &rows).events.is_empty());
}

#[test]
fn a_history_without_event_waits_awaits_no_event() {
    let history = vec![
        Event::Started {
            orchestrator: "order".into(),
            input: bytes(json!(1)),
        },
        raised("approve", json!(true)),
    ];
    let rows = timeline(&history);
    assert!(rows.is_empty());
    assert!(pending(&history, &rows).events.is_empty());
}
