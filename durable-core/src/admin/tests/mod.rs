//! The admin producers over histories built by hand: every event kind gives the row
//! expected, payloads show as JSON (one that is not JSON as a string saying so, a
//! `<script>` as the plain string it is), and the timeline and pending work follow the
//! steps.

use durable_store::{Event, Failure, FailureKind, ParentLink, Site};
use serde_json::json;

use super::history::rows;
use super::view::{HistoryRow, SiteView};

fn site(line: u32) -> Site {
    Site {
        function: "order".into(),
        file: "src/order.rs".into(),
        line,
        line_offset: 0,
    }
}

fn site_view(line: u32) -> Option<SiteView> {
    Some(SiteView {
        file: "src/order.rs".into(),
        line,
        function: "order".into(),
    })
}

fn bytes(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn failure(message: &str) -> Failure {
    Failure {
        kind: FailureKind::Returned {
            payload: bytes(json!(message)),
        },
        message: message.into(),
    }
}

fn link(seq: u64) -> ParentLink {
    ParentLink {
        instance: "parent".into(),
        incarnation: 1,
        generation: 0,
        seq,
    }
}

/// One of each event kind, with the row each gives (index and time filled below).
fn every_kind() -> Vec<(Event, HistoryRow)> {
    let row = |kind: &str| HistoryRow {
        index: 0,
        step: None,
        kind: kind.into(),
        name: None,
        outcome: None,
        at_ms: None,
        site: None,
        payload: None,
    };
    let mut all = Vec::new();
    let mut add = |event: Event, f: &dyn Fn(&mut HistoryRow)| {
        let mut expected = row(event.kind_name());
        f(&mut expected);
        all.push((event, expected));
    };
    add(Event::TurnStarted { at_ms: 1_000 }, &|_| {});
    add(
        Event::Started {
            orchestrator: "order".into(),
            input: bytes(json!({"id": 7})),
        },
        &|r| {
            r.name = Some("order".into());
            r.payload = Some(json!({"id": 7}));
        },
    );
    add(
        Event::ActivityScheduled {
            seq: 0,
            activity: "pay".into(),
            input: bytes(json!(5)),
            site: site(10),
        },
        &|r| {
            r.step = Some(0);
            r.name = Some("pay".into());
            r.site = site_view(10);
            r.payload = Some(json!(5));
        },
    );
    add(
        Event::ActivityFailed {
            seq: 0,
            attempt: 1,
            failure: failure("declined"),
        },
        &|r| {
            r.step = Some(0);
            r.name = Some("pay".into());
            r.outcome = Some("failed".into());
            r.payload = Some(
                json!({"kind": "error", "message": "declined", "error": "declined", "attempt": 1}),
            );
        },
    );
    add(
        Event::ActivityScheduled {
            seq: 1,
            activity: "pay".into(),
            input: bytes(json!(5)),
            site: site(10),
        },
        &|r| {
            r.step = Some(1);
            r.name = Some("pay".into());
            r.site = site_view(10);
            r.payload = Some(json!(5));
        },
    );
    add(
        Event::ActivityCompleted {
            seq: 1,
            output: bytes(json!("<script>alert(1)</script>")),
        },
        &|r| {
            r.step = Some(1);
            r.name = Some("pay".into());
            r.outcome = Some("completed".into());
            // A plain JSON string: escaping it is the page's job.
            r.payload = Some(json!("<script>alert(1)</script>"));
        },
    );
    add(
        Event::TimerCreated {
            seq: 2,
            fire_at_ms: 9_000,
            site: site(11),
        },
        &|r| {
            r.step = Some(2);
            r.name = Some("timer".into());
            r.site = site_view(11);
            r.payload = Some(json!({"fire_at_ms": 9_000}));
        },
    );
    add(Event::TimerFired { seq: 2 }, &|r| {
        r.step = Some(2);
        r.name = Some("timer".into());
        r.outcome = Some("fired".into());
    });
    add(
        Event::SubOrchestrationScheduled {
            seq: 3,
            orchestrator: "ship".into(),
            instance: "order:3".into(),
            input: b"not json".to_vec(),
            site: site(12),
        },
        &|r| {
            r.step = Some(3);
            r.name = Some("ship".into());
            r.site = site_view(12);
            r.payload = Some(json!({
                "instance": "order:3",
                "input": "<not JSON, 8 bytes: not json>",
            }));
        },
    );
    add(
        Event::SubOrchestrationCompleted {
            seq: 3,
            output: bytes(json!(true)),
        },
        &|r| {
            r.step = Some(3);
            r.name = Some("ship".into());
            r.outcome = Some("completed".into());
            r.payload = Some(json!(true));
        },
    );
    add(
        Event::SubOrchestrationFailed {
            seq: 3,
            failure: Failure {
                kind: FailureKind::Panicked,
                message: "boom".into(),
            },
        },
        &|r| {
            r.step = Some(3);
            r.name = Some("ship".into());
            r.outcome = Some("failed".into());
            r.payload = Some(json!({"kind": "panic", "message": "boom"}));
        },
    );
    add(
        Event::Recorded {
            seq: 4,
            what: "now".into(),
            value: bytes(json!(123)),
            site: site(13),
        },
        &|r| {
            r.step = Some(4);
            r.name = Some("now".into());
            r.site = site_view(13);
            r.payload = Some(json!(123));
        },
    );
    add(
        Event::EventRaised {
            name: "approve".into(),
            payload: bytes(json!({"by": "ann"})),
        },
        &|r| {
            r.name = Some("approve".into());
            r.payload = Some(json!({"by": "ann"}));
        },
    );
    add(
        Event::CustomStatusSet {
            status: bytes(json!("shipping")),
        },
        &|r| r.payload = Some(json!("shipping")),
    );
    add(
        Event::EventAwaited {
            name: "approve".into(),
            index: 1,
            site: site(14),
        },
        &|r| {
            r.name = Some("approve".into());
            r.site = site_view(14);
            r.payload = Some(json!({"index": 1}));
        },
    );
    add(
        Event::EventSetAside {
            name: "approve".into(),
            index: 1,
            payload: bytes(json!(3)),
            reason: "expected a map".into(),
        },
        &|r| {
            r.name = Some("approve".into());
            r.outcome = Some("set_aside".into());
            r.payload = Some(json!({"index": 1, "payload": 3, "reason": "expected a map"}));
        },
    );
    add(
        Event::TerminateRequested {
            reason: "stop".into(),
        },
        &|r| r.payload = Some(json!("stop")),
    );
    add(
        Event::SuspendRequested {
            reason: "pause".into(),
        },
        &|r| r.payload = Some(json!("pause")),
    );
    add(Event::ResumeRequested, &|_| {});
    add(
        Event::EntityOperation {
            operation: "deposit".into(),
            input: bytes(json!(10)),
            sender: None,
            at_ms: None,
        },
        &|r| {
            r.name = Some("deposit".into());
            r.payload = Some(json!({"input": 10, "sender": null, "at_ms": null}));
        },
    );
    add(
        Event::EntityCalled {
            seq: 5,
            entity: "@Account@ann".into(),
            operation: "withdraw".into(),
            input: bytes(json!(4)),
            site: site(14),
        },
        &|r| {
            r.step = Some(5);
            r.name = Some("@Account@ann.withdraw".into());
            r.site = site_view(14);
            r.payload = Some(json!(4));
        },
    );
    add(
        Event::EntityCompleted {
            seq: 5,
            output: bytes(json!(6)),
        },
        &|r| {
            r.step = Some(5);
            r.name = Some("@Account@ann.withdraw".into());
            r.outcome = Some("completed".into());
            r.payload = Some(json!(6));
        },
    );
    add(
        Event::EntityFailed {
            seq: 5,
            failure: failure("overdrawn"),
        },
        &|r| {
            r.step = Some(5);
            r.name = Some("@Account@ann.withdraw".into());
            r.outcome = Some("failed".into());
            r.payload =
                Some(json!({"kind": "error", "message": "overdrawn", "error": "overdrawn"}));
        },
    );
    add(
        Event::EntitySignaled {
            seq: 6,
            entity: "@Account@bob".into(),
            operation: "deposit".into(),
            input: bytes(json!(4)),
            at_ms: Some(5),
            site: site(15),
        },
        &|r| {
            r.step = Some(6);
            r.name = Some("@Account@bob.deposit".into());
            r.site = site_view(15);
            r.payload = Some(json!({"input": 4, "at_ms": 5}));
        },
    );
    add(
        Event::EntityCall {
            operation: "get".into(),
            input: Vec::new(),
            caller: link(9),
        },
        &|r| {
            r.step = Some(9);
            r.name = Some("get".into());
            r.payload = Some(json!({"input": null, "caller": "parent"}));
        },
    );
    add(
        Event::EntityLockRequested {
            seq: 7,
            entities: vec!["@A@1".into(), "@A@2".into()],
            site: site(16),
        },
        &|r| {
            r.step = Some(7);
            r.name = Some("lock @A@1, @A@2".into());
            r.site = site_view(16);
            r.payload = Some(json!(["@A@1", "@A@2"]));
        },
    );
    add(
        Event::EntityLock {
            owner: link(7),
            entities: vec!["@A@1".into()],
            position: 0,
        },
        &|r| {
            r.step = Some(7);
            r.name = Some("lock @A@1, @A@2".into());
            r.payload = Some(json!({"owner": "parent", "entities": ["@A@1"], "position": 0}));
        },
    );
    add(Event::EntityLockGranted { seq: 7 }, &|r| {
        r.step = Some(7);
        r.name = Some("lock @A@1, @A@2".into());
        r.outcome = Some("granted".into());
    });
    add(Event::EntityLocksReleased { lock_seq: 7 }, &|r| {
        r.step = Some(7);
        r.name = Some("lock @A@1, @A@2".into());
        r.outcome = Some("released".into());
    });
    add(Event::EntityUnlock { owner: link(7) }, &|r| {
        r.step = Some(7);
        r.name = Some("lock @A@1, @A@2".into());
        r.payload = Some(json!({"owner": "parent"}));
    });
    add(
        Event::ContinuedAsNew {
            input: bytes(json!(1)),
        },
        &|r| {
            r.outcome = Some("continued_as_new".into());
            r.payload = Some(json!(1));
        },
    );
    add(
        Event::Completed {
            output: bytes(json!("done")),
        },
        &|r| {
            r.outcome = Some("completed".into());
            r.payload = Some(json!("done"));
        },
    );
    add(
        Event::Failed {
            failure: Failure {
                kind: FailureKind::TooLarge { size: 9, limit: 4 },
                message: "too large".into(),
            },
        },
        &|r| {
            r.outcome = Some("failed".into());
            r.payload =
                Some(json!({"kind": "too_large", "message": "too large", "size": 9, "limit": 4}));
        },
    );
    all
}

#[test]
fn each_event_kind_gives_its_row() {
    let (history, expected): (Vec<Event>, Vec<HistoryRow>) = every_kind().into_iter().unzip();
    let got = rows(&history);
    assert_eq!(got.len(), expected.len());
    for (i, (got, mut expected)) in got.into_iter().zip(expected).enumerate() {
        expected.index = i as u32;
        // Every event after the turn marker has its time.
        expected.at_ms = Some(1_000);
        assert_eq!(got, expected, "event #{i}");
    }
}

#[test]
fn a_script_payload_serializes_as_a_plain_json_string() {
    let history = [Event::EventRaised {
        name: "x".into(),
        payload: bytes(json!("<script>alert(1)</script>")),
    }];
    let row = &rows(&history)[0];
    assert_eq!(
        serde_json::to_value(row).unwrap()["payload"],
        json!("<script>alert(1)</script>")
    );
    assert_eq!(
        row.at_ms, None,
        "a history without turn markers has no times"
    );
}

mod timeline;
