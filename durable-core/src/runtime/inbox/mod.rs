//! The per-instance inboxes: the events delivered to an instance and not yet turned, and
//! what the runtime knows of the instance between turns (a turn task runs for it, it is
//! stalled, it is suspended). The flags change in one place, by what happened to the
//! instance ([`Inboxes::stalled`], [`Inboxes::suspended`], [`Inboxes::request_committed`],
//! [`Inboxes::next_turn`]...); the engine ([`super::engine`]) owns the inboxes and
//! spawns the turn task an inbox claims.
//!
//! The inboxes are open to one lease of the worker at a time (see [`super::lease`]):
//! a delivery sent under another (a message committed under a lease that lapsed since)
//! is dropped, as is what a turn computed under it does to an inbox; the claim of the
//! worker's next lease takes it from the store instead. A lease that lapses closes them
//! ([`Inboxes::close`]), dropping everything they held.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use durable_store::{ActivityTask, Event, Failure, Incarnation, Status, WorkId, WorkerId};

use super::lease;

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
#[expect(
    clippy::large_enum_variant,
    reason = "returned once and moved into an `Outgoing` at once: a box would allocate for nothing"
)]
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
    /// An entity's messages its last turn held back (its lock is another's, or a lock
    /// request has not come yet), in arrival order, unacknowledged: offered again, ahead
    /// of `messages`, when new ones come (only they can change what runs).
    held: Vec<Delivery>,
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
        let mut batch: Vec<Delivery> = self.messages.drain(..end).collect();
        if !batch.is_empty() && !self.held.is_empty() {
            self.held.append(&mut batch);
            batch = std::mem::take(&mut self.held);
        }
        batch
    }
}

/// The inboxes of the instances that have events or flags in memory, by instance id, and
/// the lease they are open to. Every method that adds work returns whether the caller is
/// to spawn the instance's turn task (none runs for it yet).
#[derive(Debug)]
pub(in crate::runtime) struct Inboxes(Mutex<Open>);

/// The inboxes, and the lease whose deliveries they take.
#[derive(Debug)]
struct Open {
    /// The worker (lease) whose deliveries and turns are taken; 0, which no lease is,
    /// while the worker joins the store again.
    worker: WorkerId,
    inboxes: HashMap<String, Inbox>,
}

impl Open {
    /// Whether the running turn, if any, was computed under a lease other than the one
    /// the inboxes are open to: what it does to them is dropped.
    fn stale_turn(&self) -> bool {
        lease::turn_lease().is_some_and(|worker| worker != self.worker)
    }
}

impl Inboxes {
    /// Empty inboxes, open to the deliveries of `worker`.
    pub(in crate::runtime) fn new(worker: WorkerId) -> Self {
        Self(Mutex::new(Open {
            worker,
            inboxes: HashMap::new(),
        }))
    }

    /// The lease of `worker` lapsed: drops every delivery and flag the inboxes hold, and
    /// takes no delivery until [`open`](Self::open). An inbox whose turn task runs stays,
    /// empty, so that the task ends (or goes on with what the next lease delivers) and
    /// no second task starts beside it.
    pub(in crate::runtime) fn close(&self) {
        let mut open = lock(&self.0);
        open.worker = 0;
        open.inboxes.retain(|_, inbox| {
            *inbox = Inbox {
                busy: inbox.busy,
                ..Inbox::default()
            };
            inbox.busy
        });
    }

    /// Takes the deliveries of `worker`, the worker's new lease, from now on.
    pub(in crate::runtime) fn open(&self, worker: WorkerId) {
        lock(&self.0).worker = worker;
    }

    /// Queues `delivery` for `instance`, sent under the lease of `worker`.
    pub(in crate::runtime) fn push(
        &self,
        instance: &str,
        delivery: Delivery,
        worker: WorkerId,
    ) -> bool {
        let mut open = lock(&self.0);
        if open.worker != worker {
            return false;
        }
        let inbox = open.inboxes.entry(instance.to_string()).or_default();
        inbox.messages.push(delivery);
        inbox.claim_turns()
    }

    /// Queues `deliveries` for `instance`, sent under the lease of `worker`, ahead of the
    /// events already waiting, but after the client requests at their head.
    pub(in crate::runtime) fn push_first(
        &self,
        instance: &str,
        deliveries: impl IntoIterator<Item = Delivery>,
        worker: WorkerId,
    ) -> bool {
        let mut open = lock(&self.0);
        if open.worker != worker {
            return false;
        }
        let inbox = open.inboxes.entry(instance.to_string()).or_default();
        let at = inbox.messages.iter().take_while(|d| d.is_control()).count();
        inbox.messages.splice(at..at, deliveries);
        inbox.claim_turns()
    }

    /// Queues every one of `deliveries`, claimed under the lease of `worker`, under one
    /// lock; returns the instances whose turn task the caller is to spawn.
    pub(in crate::runtime) fn push_all(
        &self,
        deliveries: Vec<Outgoing>,
        worker: WorkerId,
    ) -> Vec<String> {
        let mut idle = Vec::new();
        let mut open = lock(&self.0);
        if open.worker != worker {
            return idle;
        }
        let inboxes = &mut open.inboxes;
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
        let mut open = lock(&self.0);
        let inbox = open.inboxes.entry(instance.to_string()).or_default();
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
        let mut open = lock(&self.0);
        let inbox = open.inboxes.entry(instance.to_string()).or_default();
        if !runnable || inbox.stalled || inbox.suspended {
            return HandOver::Refused(delivery);
        }
        inbox.messages.push(delivery);
        HandOver::Queued {
            spawn_turns: inbox.claim_turns(),
        }
    }

    /// The turn task of `instance` asks for its next turn's messages, and the lease the
    /// turn is computed (and committed) under. `None` ends the task: nothing to turn (or
    /// `runnable` is false, the runtime taking no work), and an inbox with nothing left
    /// in it is dropped.
    pub(in crate::runtime) fn next_turn(
        &self,
        instance: &str,
        runnable: bool,
    ) -> Option<(Vec<Delivery>, WorkerId)> {
        let mut open = lock(&self.0);
        let worker = open.worker;
        let inboxes = &mut open.inboxes;
        let inbox = inboxes.get_mut(instance).expect("busy inbox exists");
        let batch = if runnable {
            inbox.next_batch()
        } else {
            Vec::new()
        };
        let retry = std::mem::take(&mut inbox.retry) && runnable && !inbox.stalled;
        if batch.is_empty() && !retry {
            inbox.busy = false;
            if inbox.messages.is_empty()
                && inbox.held.is_empty()
                && !inbox.stalled
                && !inbox.suspended
            {
                inboxes.remove(instance);
            }
            return None;
        }
        Some((batch, worker))
    }

    /// A turn over `messages`, computed under the lease of `worker`, was not committed:
    /// they go back to the head of the inbox. If `permanent`, the instance is stalled and
    /// its turn task ends (returns false); otherwise the task is to retry (returns true).
    /// Under a lease that lapsed since, the messages are dropped (the next lease's claim
    /// takes them from the store), and the task goes on with what the inbox holds now.
    pub(in crate::runtime) fn turn_failed(
        &self,
        instance: &str,
        messages: Vec<Delivery>,
        permanent: bool,
        worker: WorkerId,
    ) -> bool {
        let mut open = lock(&self.0);
        if open.worker != worker {
            return true;
        }
        let inbox = open.inboxes.get_mut(instance).expect("busy inbox exists");
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

    /// The turn of entity `instance`, computed under the lease of `worker`, holds back
    /// `held` (in arrival order, unacknowledged): they are offered again, ahead of what
    /// comes next, at its next turn.
    pub(in crate::runtime) fn hold(&self, instance: &str, held: Vec<Delivery>, worker: WorkerId) {
        let mut open = lock(&self.0);
        if open.worker != worker || held.is_empty() {
            return;
        }
        let inbox = open.inboxes.get_mut(instance).expect("busy inbox exists");
        inbox.held.splice(0..0, held);
    }

    /// The turn of `instance`, computed under the lease of `worker`, cannot run (an
    /// entity whose stored state does not decode): `messages` go back to the head of its
    /// inbox, and it stalls. Everything it gets from now on waits behind them, in memory
    /// and in the store, until a restart: none of it may run before them.
    pub(in crate::runtime) fn stall_with(
        &self,
        instance: &str,
        messages: Vec<Delivery>,
        worker: WorkerId,
    ) {
        let mut open = lock(&self.0);
        if open.worker != worker {
            return;
        }
        let inbox = open.inboxes.get_mut(instance).expect("busy inbox exists");
        let newer = std::mem::replace(&mut inbox.messages, messages);
        inbox.messages.extend(newer);
        inbox.stalled = true;
    }

    /// `instance` is suspended (its request is being committed): `hold` stores the
    /// results in its inbox, which will wait there until it resumes.
    pub(in crate::runtime) fn suspended(&self, instance: &str, hold: impl FnOnce(&mut [Delivery])) {
        let mut open = lock(&self.0);
        if open.stale_turn() {
            return;
        }
        if let Some(inbox) = open.inboxes.get_mut(instance) {
            inbox.suspended = true;
            hold(&mut inbox.messages);
        }
    }

    /// `instance` stalls (its status is being committed): `hold` stores the results in
    /// its inbox, which stay there until a restart.
    pub(in crate::runtime) fn stalled(&self, instance: &str, hold: impl FnOnce(&mut [Delivery])) {
        let mut open = lock(&self.0);
        if open.stale_turn() {
            return;
        }
        if let Some(inbox) = open.inboxes.get_mut(instance) {
            inbox.stalled = true;
            hold(&mut inbox.messages);
        }
    }

    /// A client's request to `instance` was committed, leaving it with `status`: it is
    /// suspended or not, and stalled if it was or is now, unless it was terminated (what
    /// it held is then acknowledged).
    pub(in crate::runtime) fn request_committed(&self, instance: &str, status: &Status) {
        let mut open = lock(&self.0);
        if open.stale_turn() {
            return;
        }
        if let Some(inbox) = open.inboxes.get_mut(instance) {
            inbox.suspended = status.waits_for_resume();
            let stalled_now = matches!(status, Status::Stalled { .. });
            let terminated = matches!(status, Status::Terminated { .. });
            inbox.stalled = (inbox.stalled || stalled_now) && !terminated;
        }
    }

    /// Recovery found `instance` suspended in the store.
    pub(in crate::runtime) fn found_suspended(&self, instance: String) {
        lock(&self.0).inboxes.entry(instance).or_default().suspended = true;
    }

    /// Recovery stalled `instance` (it waits for missing code).
    pub(in crate::runtime) fn found_stalled(&self, instance: String) {
        lock(&self.0).inboxes.entry(instance).or_default().stalled = true;
    }

    /// Calls `hold` on every inbox's messages, with its instance (at shutdown, to store
    /// the results held in memory).
    pub(in crate::runtime) fn hold_all(&self, mut hold: impl FnMut(&str, &mut [Delivery])) {
        for (instance, inbox) in lock(&self.0).inboxes.iter_mut() {
            hold(instance, &mut inbox.messages);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
