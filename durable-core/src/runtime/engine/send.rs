//! Messages sent from outside a turn: a client's start, event or signal.

use std::sync::Arc;

use durable_store::{Commit, Event};

use super::super::entities;
use super::super::inbox::{Outgoing, Recipient};
use super::{Cached, Engine, lock};
use crate::error::Error;

impl Engine {
    /// Commits `event` as a message for run `to` of `instance`, with whatever else
    /// `commit` holds, then delivers it.
    ///
    /// It runs to its end in a task of its own, whether or not the caller waits for it:
    /// a caller that stops waiting once the commit is queued (a timeout, a request
    /// handler dropped) must not leave what the commit wrote undelivered. An instance it
    /// creates would be held by this worker in the store, and not here: its messages
    /// (its `Started`, what others send it) run by no one while the worker lives.
    ///
    /// # Errors
    ///
    /// What [`commit`](Self::commit) fails with; nothing is delivered then.
    pub(crate) async fn send_message(
        self: &Arc<Self>,
        instance: &str,
        to: Recipient,
        event: Event,
        commit: Commit,
    ) -> Result<(), Error> {
        self.send_traced(instance, to, event, None, commit).await
    }

    /// [`send_message`](Self::send_message), with the caller's trace context (an
    /// `Event::TraceContext`) sent after `event`, in the same commit.
    pub(crate) async fn send_traced(
        self: &Arc<Self>,
        instance: &str,
        to: Recipient,
        event: Event,
        trace: Option<Event>,
        commit: Commit,
    ) -> Result<(), Error> {
        let events = std::iter::once(event).chain(trace).collect();
        self.send_events(instance, to, events, commit).await
    }

    /// [`send_message`](Self::send_message) for `events` (none or several, in order), in
    /// one commit: a start with options.
    pub(crate) async fn send_events(
        self: &Arc<Self>,
        instance: &str,
        to: Recipient,
        events: Vec<Event>,
        commit: Commit,
    ) -> Result<(), Error> {
        let (engine, instance) = (self.clone(), instance.to_string());
        // Tracked, so a shutdown waits for it as for turns; boxed as they are (see
        // `spawn_boxed`).
        let sent = (self.tracker).spawn(Box::pin(async move {
            engine.send_now(&instance, to, events, commit).await
        }));
        match sent.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The tokio runtime is shutting down.
            Err(_) => Err(Error::ShutDown),
        }
    }

    /// What [`send_message`](Self::send_message) does, in the task it spawns.
    async fn send_now(
        self: &Arc<Self>,
        instance: &str,
        to: Recipient,
        events: Vec<Event>,
        mut commit: Commit,
    ) -> Result<(), Error> {
        // A clock that skips time holds still until the event is handed over.
        let _busy = self.busy();
        if self.is_tool() {
            self.reserve_for_tool().await?;
        }
        let mut outbox = Vec::with_capacity(events.len());
        for event in events {
            self.enqueue_message(instance, to, event, &mut commit, &mut outbox);
        }
        let (lease, commit) = self.commit_leased(commit).await?;
        // A tool's message waits in the store for the worker that claims its instance.
        if self.is_tool() {
            return Ok(());
        }
        // An instance the commit created (a start or restart) is new here: its record is
        // what its first turn needs, so that turn does not read it back from the store.
        // Not an entity's: its record is made by whichever sender's commit comes first,
        // and its turns keep their own in the cache (`runtime/entities.rs`).
        if let Some((_, record)) = commit.instances.iter().find(|(id, _)| id == instance)
            && record.history_len == 0
            && !entities::is_entity(instance, record)
            && self.holds(instance)
        {
            // Unless a turn ran first (this task not scheduled for a commit's round trip)
            // and left its own entry.
            let mut cache = lock(&self.cache);
            if !cache.contains(instance) {
                let record = record.clone();
                let execution = None;
                cache.put(instance.to_string(), Cached { execution, record });
            }
        }
        for Outgoing { instance, delivery } in outbox {
            self.deliver_under(lease, instance, delivery);
        }
        Ok(())
    }
}
