//! The inboxes' bookkeeping: batches, requests, stalls, held messages, lapsed leases.

use super::*;

/// The worker the inboxes are open to.
const W: WorkerId = 7;

fn event(id: WorkId) -> Delivery {
    let to = Recipient {
        incarnation: 1,
        generation: None,
    };
    Delivery::message(id, to, Event::TimerFired { seq: id })
}

fn request(id: WorkId) -> Delivery {
    let to = Recipient {
        incarnation: 1,
        generation: None,
    };
    Delivery::message(id, to, Event::ResumeRequested)
}

fn ids(batch: Option<(Vec<Delivery>, WorkerId)>) -> Option<Vec<WorkId>> {
    batch.map(|(b, _)| b.iter().map(|d| d.id).collect())
}

#[test]
fn a_turn_takes_the_events_before_a_request_then_the_request_alone() {
    let inboxes = Inboxes::new(W);
    assert!(inboxes.push("a", event(1), W));
    assert!(
        !inboxes.push("a", event(2), W),
        "one turn task per instance"
    );
    inboxes.push("a", request(3), W);
    inboxes.push("a", event(4), W);
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![1, 2]));
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![3]));
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![4]));
    assert_eq!(ids(inboxes.next_turn("a", true)), None);
    // The task ended and the empty inbox is gone: the next event claims a new task.
    assert!(inboxes.push("a", event(5), W));
}

#[test]
fn a_suspended_instance_takes_only_requests_and_keeps_its_results_out_of_memory() {
    let inboxes = Inboxes::new(W);
    inboxes.push("a", event(1), W);
    inboxes.suspended("a", |held| assert_eq!(held.len(), 1));
    match inboxes.hand_over("a", event(2), true) {
        HandOver::Refused(delivery) => assert_eq!(delivery.id, 2),
        HandOver::Queued { .. } => panic!("a suspended instance takes no result"),
    }
    inboxes.push("a", request(3), W);
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![3]));
    inboxes.request_committed("a", &Status::Running);
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![1]));
}

#[test]
fn a_turn_that_fails_for_good_stalls_until_a_terminate() {
    let inboxes = Inboxes::new(W);
    inboxes.push("a", event(1), W);
    let (batch, lease) = inboxes.next_turn("a", true).unwrap();
    assert!(
        !inboxes.turn_failed("a", batch, true, lease),
        "the task ends"
    );
    assert!(inboxes.push("a", request(2), W));
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![2]));
    let terminated = Status::Terminated {
        reason: "stop".into(),
    };
    inboxes.request_committed("a", &terminated);
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![1]));
}

#[test]
fn held_messages_are_offered_again_ahead_of_new_ones_only_when_new_ones_come() {
    let inboxes = Inboxes::new(W);
    assert!(inboxes.push("e", event(1), W));
    inboxes.push("e", event(2), W);
    let (batch, lease) = inboxes.next_turn("e", true).unwrap();
    // The turn ran 1 and holds 2 back (a lock).
    inboxes.hold("e", batch[1..].to_vec(), lease);
    assert_eq!(ids(inboxes.next_turn("e", true)), None, "nothing new");
    assert!(inboxes.push("e", event(3), W), "kept, with what it holds");
    assert_eq!(ids(inboxes.next_turn("e", true)), Some(vec![2, 3]));
    // Held by a turn computed under another lease (one that lapsed): dropped.
    inboxes.hold("e", vec![event(2)], 8);
    assert_eq!(ids(inboxes.next_turn("e", true)), None);
    assert!(inboxes.push("e", event(4), W));
    assert_eq!(ids(inboxes.next_turn("e", true)), Some(vec![4]));
}

#[test]
fn an_entity_stalled_with_its_messages_runs_nothing_sent_after_them() {
    let inboxes = Inboxes::new(W);
    inboxes.push("e", event(1), W);
    let (batch, lease) = inboxes.next_turn("e", true).unwrap();
    inboxes.stall_with("e", batch, lease);
    inboxes.push("e", event(2), W);
    assert_eq!(ids(inboxes.next_turn("e", true)), None);
    assert!(
        inboxes.push("e", event(3), W),
        "a task, which finds nothing to run"
    );
    assert_eq!(ids(inboxes.next_turn("e", true)), None);
}

#[test]
fn a_lapsed_lease_drops_what_the_inboxes_held_and_what_was_sent_under_it() {
    let inboxes = Inboxes::new(W);
    assert!(inboxes.push("a", event(1), W));
    let (batch, lease) = inboxes.next_turn("a", true).unwrap();
    inboxes.push("a", event(2), W);
    inboxes.push("b", event(3), W);
    inboxes.close();
    assert!(!inboxes.push("b", event(4), W), "closed: nothing is taken");
    inboxes.open(8);
    assert!(
        !inboxes.push("b", event(5), W),
        "sent under the lapsed lease"
    );
    // The turn of `a` under the lapsed lease failed: its messages are dropped, and its
    // task, still the only one of `a`, goes on with what the new lease delivers.
    assert!(inboxes.turn_failed("a", batch, false, lease));
    assert!(
        !inboxes.push("a", event(6), 8),
        "the task of `a` still runs"
    );
    assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![6]));
    assert_eq!(ids(inboxes.next_turn("a", true)), None);
    // The task of `b` finds its inbox emptied, and ends.
    assert_eq!(ids(inboxes.next_turn("b", true)), None);
    assert!(inboxes.push("b", event(7), 8), "a new task for `b`");
    assert_eq!(ids(inboxes.next_turn("b", true)), Some(vec![7]));
}
