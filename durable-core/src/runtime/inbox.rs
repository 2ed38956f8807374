//! The per-instance inboxes: the events delivered to an instance and not yet turned, and
//! what the runtime knows of the instance between turns (a turn task runs for it, it is
//! stalled, it is suspended). The flags change in one place, by what happened to the
//! instance ([`Inboxes::stalled`], [`Inboxes::suspended`], [`Inboxes::request_committed`],
//! [`Inboxes::next_turn`]...); the engine ([`super::engine`]) owns the inboxes and
//! spawns the turn task an inbox claims.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use durable_store::{ActivityTask, Event, Failure, Incarnation, Status, WorkId};

pub(in crate::runtime) use crate::replay::state::Run;

/// The run a message is for: an incarnation, and one generation of it or any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recipient {
    /// The incarnation the message is for: dropped on arrival at any other.
    pub(in crate::runtime) incarnation: Incarnation,
    /// The generation it is for; `None` for any (a client's events and requests).
    pub(in crate::runtime) generation: Option<u32>,
}

impl From<Run> for Recipient {
    fn from(run: Run) -> Self {
        Self {
            incarnation: run.incarnation,
            generation: Some(run.generation),
        }
    }
}

impl Recipient {
    /// Any generation of `incarnation`: where a client's events and requests go, taken by
    /// whichever generation the instance is in when they arrive.
    pub(crate) fn any_generation(incarnation: Incarnation) -> Self {
        Self {
            incarnation,
            generation: None,
        }
    }
}

/// An event on its way to an instance, with the work item that carries it.
#[derive(Clone, Debug)]
pub(in crate::runtime) struct Delivery {
    /// The work item that carries it (for an activity result held in memory, the
    /// activity's task).
    pub(in crate::runtime) id: WorkId,
    /// The incarnation it is for: dropped on arrival at any other.
    pub(in crate::runtime) incarnation: Incarnation,
    /// The generation it is for; `None` for any.
    pub(in crate::runtime) generation: Option<u32>,
    /// What it tells the instance.
    pub(in crate::runtime) event: Event,
    /// Set for an activity result handed to its instance in memory: the activity's
    /// progress key. `id` is then the activity's task, and the turn that takes the result
    /// removes the task and the progress in the commit that records the result.
    pub(in crate::runtime) progress_key: Option<String>,
    /// Set for an activity whose input its code cannot decode (a task queued by other
    /// code): the task, which stays in the store as never executed. The delivery stalls
    /// its instance when turned; `event` is the `ActivityFailed` that says why, never
    /// recorded.
    pub(in crate::runtime) undecodable: Option<Box<ActivityTask>>,
}

impl Delivery {
    /// A stored message (work item `id`) for `to`.
    pub(in crate::runtime) fn message(id: WorkId, to: Recipient, event: Event) -> Self {
        Self {
            id,
            incarnation: to.incarnation,
            generation: to.generation,
            event,
            progress_key: None,
            undecodable: None,
        }
    }

    /// Whether it is for `run` of its instance.
    pub(in crate::runtime) fn is_for(&self, run: Run) -> bool {
        self.incarnation == run.incarnation && self.generation.is_none_or(|g| g == run.generation)
    }

    /// For an activity whose input does not decode: the failure that stalls its instance.
    pub(in crate::runtime) fn undecodable_input(&self) -> Option<&Failure> {
        self.undecodable.as_ref()?;
        match &self.event {
            Event::ActivityFailed { failure, .. } => Some(failure),
            _ => None,
        }
    }

    /// Whether the event is a client's request about the instance rather than input to
    /// its orchestrator.
    pub(in crate::runtime) fn is_control(&self) -> bool {
        matches!(
            self.event,
            Event::TerminateRequested { .. }
                | Event::SuspendRequested { .. }
                | Event::ResumeRequested
        )
    }
}

/// A delivery for an instance, to send once the commit that stores it is durable.
#[derive(Debug)]
pub(in crate::runtime) struct Outgoing {
    /// The instance it goes to.
    pub(in crate::runtime) instance: String,
    /// What it carries.
    pub(in crate::runtime) delivery: Delivery,
}

/// What became of an activity result handed to its instance's inbox.
pub(in crate::runtime) enum HandOver {
    /// Queued for the instance's next turn; `spawn_turns` if no turn task runs for it.
    Queued { spawn_turns: bool },
    /// Not queued (the instance will not turn soon): the delivery, to store instead.
    Refused(Delivery),
}

/// Per-instance queue of events not yet turned.
#[derive(Debug, Default)]
struct Inbox {
    messages: Vec<Delivery>,
    /// A turn task is running for this instance.
    busy: bool,
    /// The instance is stalled: its events stay in the store until a restart.
    stalled: bool,
    /// The instance is suspended: only client requests are taken.
    suspended: bool,
    /// Run a turn even without events (a stalled instance gets another chance).
    retry: bool,
}

impl Inbox {
    /// Claims the turn task of this inbox: true if none runs, and the caller is to spawn
    /// one.
    fn claim_turns(&mut self) -> bool {
        !std::mem::replace(&mut self.busy, true)
    }

    /// The messages for the next turn: a client request alone, or the events before the
    /// next request (only requests while suspended or stalled).
    fn next_batch(&mut self) -> Vec<Delivery> {
        let end = match self.messages.iter().position(Delivery::is_control) {
            Some(0) => 1,
            Some(i) => i,
            None => self.messages.len(),
        };
        if self.suspended || self.stalled {
            return match self.messages.iter().position(Delivery::is_control) {
                Some(i) => vec![self.messages.remove(i)],
                None => Vec::new(),
            };
        }
        self.messages.drain(..end).collect()
    }
}

/// The inboxes of the instances that have events or flags in memory, by instance id.
/// Every method that adds work returns whether the caller is to spawn the instance's turn
/// task (none runs for it yet).
#[derive(Debug, Default)]
pub(in crate::runtime) struct Inboxes(Mutex<HashMap<String, Inbox>>);

impl Inboxes {
    /// Queues `delivery` for `instance`.
    pub(in crate::runtime) fn push(&self, instance: &str, delivery: Delivery) -> bool {
        let mut inboxes = lock(&self.0);
        let inbox = inboxes.entry(instance.to_string()).or_default();
        inbox.messages.push(delivery);
        inbox.claim_turns()
    }

    /// Queues `deliveries` for `instance` ahead of the events already waiting, but after
    /// the client requests at their head.
    pub(in crate::runtime) fn push_first(
        &self,
        instance: &str,
        deliveries: impl IntoIterator<Item = Delivery>,
    ) -> bool {
        let mut inboxes = lock(&self.0);
        let inbox = inboxes.entry(instance.to_string()).or_default();
        let at = inbox.messages.iter().take_while(|d| d.is_control()).count();
        inbox.messages.splice(at..at, deliveries);
        inbox.claim_turns()
    }

    /// Queues every one of `deliveries` under one lock; returns the instances whose turn
    /// task the caller is to spawn.
    pub(in crate::runtime) fn push_all(&self, deliveries: Vec<Outgoing>) -> Vec<String> {
        let mut idle = Vec::new();
        let mut inboxes = lock(&self.0);
        for Outgoing { instance, delivery } in deliveries {
            let inbox = inboxes.entry(instance.clone()).or_default();
            inbox.messages.push(delivery);
            if inbox.claim_turns() {
                idle.push(instance);
            }
        }
        idle
    }

    /// Asks for a turn of `instance` even without new events.
    pub(in crate::runtime) fn retry(&self, instance: &str) -> bool {
        let mut inboxes = lock(&self.0);
        let inbox = inboxes.entry(instance.to_string()).or_default();
        inbox.retry = true;
        inbox.claim_turns()
    }

    /// Hands an activity result to `instance` if it will turn soon (`runnable`, and it is
    /// neither stalled nor suspended).
    pub(in crate::runtime) fn hand_over(
        &self,
        instance: &str,
        delivery: Delivery,
        runnable: bool,
    ) -> HandOver {
        let mut inboxes = lock(&self.0);
        let inbox = inboxes.entry(instance.to_string()).or_default();
        if !runnable || inbox.stalled || inbox.suspended {
            return HandOver::Refused(delivery);
        }
        inbox.messages.push(delivery);
        HandOver::Queued {
            spawn_turns: inbox.claim_turns(),
        }
    }

    /// The turn task of `instance` asks for its next turn's messages. `None` ends the
    /// task: nothing to turn (or `runnable` is false, the runtime taking no work), and an
    /// inbox with nothing left in it is dropped.
    pub(in crate::runtime) fn next_turn(
        &self,
        instance: &str,
        runnable: bool,
    ) -> Option<Vec<Delivery>> {
        let mut inboxes = lock(&self.0);
        let inbox = inboxes.get_mut(instance).expect("busy inbox exists");
        let batch = if runnable {
            inbox.next_batch()
        } else {
            Vec::new()
        };
        let retry = std::mem::take(&mut inbox.retry) && runnable && !inbox.stalled;
        if batch.is_empty() && !retry {
            inbox.busy = false;
            if inbox.messages.is_empty() && !inbox.stalled && !inbox.suspended {
                inboxes.remove(instance);
            }
            return None;
        }
        Some(batch)
    }

    /// A turn over `messages` was not committed: they go back to the head of the inbox.
    /// If `permanent`, the instance is stalled and its turn task ends (returns false);
    /// otherwise the task is to retry (returns true).
    pub(in crate::runtime) fn turn_failed(
        &self,
        instance: &str,
        messages: Vec<Delivery>,
        permanent: bool,
    ) -> bool {
        let mut inboxes = lock(&self.0);
        let inbox = inboxes.get_mut(instance).expect("busy inbox exists");
        let newer = std::mem::replace(&mut inbox.messages, messages);
        inbox.messages.extend(newer);
        if permanent {
            inbox.stalled = true;
            inbox.busy = false;
            return false;
        }
        inbox.retry = true;
        true
    }

    /// `instance` is suspended (its request is being committed): `hold` stores the
    /// results in its inbox, which will wait there until it resumes.
    pub(in crate::runtime) fn suspended(&self, instance: &str, hold: impl FnOnce(&mut [Delivery])) {
        if let Some(inbox) = lock(&self.0).get_mut(instance) {
            inbox.suspended = true;
            hold(&mut inbox.messages);
        }
    }

    /// `instance` stalls (its status is being committed): `hold` stores the results in
    /// its inbox, which stay there until a restart.
    pub(in crate::runtime) fn stalled(&self, instance: &str, hold: impl FnOnce(&mut [Delivery])) {
        if let Some(inbox) = lock(&self.0).get_mut(instance) {
            inbox.stalled = true;
            hold(&mut inbox.messages);
        }
    }

    /// A client's request to `instance` was committed, leaving it with `status`: it is
    /// suspended or not, and stalled if it was or is now, unless it was terminated (what
    /// it held is then acknowledged).
    pub(in crate::runtime) fn request_committed(&self, instance: &str, status: &Status) {
        if let Some(inbox) = lock(&self.0).get_mut(instance) {
            inbox.suspended = matches!(status, Status::Suspended { .. });
            let stalled_now = matches!(status, Status::Stalled { .. });
            let terminated = matches!(status, Status::Terminated { .. });
            inbox.stalled = (inbox.stalled || stalled_now) && !terminated;
        }
    }

    /// Recovery found `instance` suspended in the store.
    pub(in crate::runtime) fn found_suspended(&self, instance: String) {
        lock(&self.0).entry(instance).or_default().suspended = true;
    }

    /// Recovery stalled `instance` (it waits for missing code).
    pub(in crate::runtime) fn found_stalled(&self, instance: String) {
        lock(&self.0).entry(instance).or_default().stalled = true;
    }

    /// Calls `hold` on every inbox's messages, with its instance (at shutdown, to store
    /// the results held in memory).
    pub(in crate::runtime) fn hold_all(&self, mut hold: impl FnMut(&str, &mut [Delivery])) {
        for (instance, inbox) in lock(&self.0).iter_mut() {
            hold(instance, &mut inbox.messages);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn ids(batch: Option<Vec<Delivery>>) -> Option<Vec<WorkId>> {
        batch.map(|b| b.iter().map(|d| d.id).collect())
    }

    #[test]
    fn a_turn_takes_the_events_before_a_request_then_the_request_alone() {
        let inboxes = Inboxes::default();
        assert!(inboxes.push("a", event(1)));
        assert!(!inboxes.push("a", event(2)), "one turn task per instance");
        inboxes.push("a", request(3));
        inboxes.push("a", event(4));
        assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![1, 2]));
        assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![3]));
        assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![4]));
        assert_eq!(ids(inboxes.next_turn("a", true)), None);
        // The task ended and the empty inbox is gone: the next event claims a new task.
        assert!(inboxes.push("a", event(5)));
    }

    #[test]
    fn a_suspended_instance_takes_only_requests_and_keeps_its_results_out_of_memory() {
        let inboxes = Inboxes::default();
        inboxes.push("a", event(1));
        inboxes.suspended("a", |held| assert_eq!(held.len(), 1));
        match inboxes.hand_over("a", event(2), true) {
            HandOver::Refused(delivery) => assert_eq!(delivery.id, 2),
            HandOver::Queued { .. } => panic!("a suspended instance takes no result"),
        }
        inboxes.push("a", request(3));
        assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![3]));
        inboxes.request_committed("a", &Status::Running);
        assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![1]));
    }

    #[test]
    fn a_turn_that_fails_for_good_stalls_until_a_terminate() {
        let inboxes = Inboxes::default();
        inboxes.push("a", event(1));
        let batch = inboxes.next_turn("a", true).unwrap();
        assert!(!inboxes.turn_failed("a", batch, true), "the task ends");
        assert!(inboxes.push("a", request(2)));
        assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![2]));
        let terminated = Status::Terminated {
            reason: "stop".into(),
        };
        inboxes.request_committed("a", &terminated);
        assert_eq!(ids(inboxes.next_turn("a", true)), Some(vec![1]));
    }
}
