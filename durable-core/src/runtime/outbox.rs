//! What a commit sends once it is durable: the messages it stored for instances (this
//! one's next generation, children started, parents told) and the timers it stored. The
//! turns ([`super::turns`]), the client's requests ([`super::control`]) and the
//! runtime's verdicts ([`super::verdicts`]) fill an [`Outbox`] beside their commit and
//! send it after.

use std::sync::Arc;

use durable_store::{Commit, Event, InstanceRecord, Status};

use super::engine::Engine;
use super::inbox::{Delivery, Outgoing, Recipient, Run};
use super::timer_arming::{self, TimerToArm};
use crate::failure;

/// What to send once a commit is durable.
#[derive(Debug, Default)]
pub(in crate::runtime) struct Outbox {
    /// Timers to arm, for the instance that made the commit.
    pub(in crate::runtime) timers: Vec<TimerToArm>,
    /// Events for other instances (children started, parents told) or for this one.
    pub(in crate::runtime) deliveries: Vec<Outgoing>,
}

impl Outbox {
    /// Adds a message for `instance` to `commit`, and to this outbox. `to` is the run it
    /// is for.
    pub(in crate::runtime) fn enqueue(
        &mut self,
        engine: &Engine,
        instance: &str,
        to: Recipient,
        event: Event,
        commit: &mut Commit,
    ) {
        engine.enqueue_message(instance, to, event, commit, &mut self.deliveries);
    }

    /// If `record` is a sub-orchestration that finished, adds its result to `commit` as a
    /// message to its parent.
    pub(in crate::runtime) fn tell_parent(
        &mut self,
        engine: &Engine,
        record: &InstanceRecord,
        commit: &mut Commit,
    ) {
        let Some(parent) = &record.parent else {
            return;
        };
        let seq = parent.seq;
        let event = match &record.status {
            Status::Completed { output } => Event::SubOrchestrationCompleted {
                seq,
                output: output.clone(),
            },
            Status::Failed { failure } => Event::SubOrchestrationFailed {
                seq,
                failure: failure.clone(),
            },
            Status::Terminated { reason } => Event::SubOrchestrationFailed {
                seq,
                failure: failure::terminated(reason),
            },
            _ => return,
        };
        let to = Recipient {
            incarnation: parent.incarnation,
            generation: Some(parent.generation),
        };
        self.enqueue(engine, &parent.instance, to, event, commit);
    }

    /// Arms the timers and delivers the messages of a durable commit made by `run` of
    /// `instance`. Those `instance` sent itself (the start of its next generation and the
    /// events it carries over, a refused child's failure) go ahead of whatever reached it
    /// while the turn ran: they happened at the turn.
    pub(in crate::runtime) fn send(self, engine: &Arc<Engine>, instance: &str, run: Run) {
        for timer in self.timers {
            timer_arming::arm(engine, instance.to_string(), run, timer);
        }
        let (own, others): (Vec<_>, Vec<_>) = self
            .deliveries
            .into_iter()
            .partition(|outgoing| outgoing.instance == instance);
        if !own.is_empty() {
            engine.deliver_first(instance, own.into_iter().map(|o| o.delivery));
        }
        for Outgoing { instance, delivery } in others {
            engine.deliver(instance, delivery);
        }
    }
}

/// A commit that acknowledges `messages`: their work items, and the progress of the
/// activities whose results they are.
pub(in crate::runtime) fn consumed(messages: &[Delivery]) -> Commit {
    Commit {
        dequeued: messages.iter().map(|d| d.id).collect(),
        progress: messages
            .iter()
            .filter_map(|d| Some((d.progress_key.clone()?, None)))
            .collect(),
        ..Commit::default()
    }
}
