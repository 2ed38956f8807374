//! The futures of durable operations: each resolves once its result is in the history.
//!
//! They are woken by nothing: the runtime polls the orchestrator once per turn, after the
//! turn's events are applied. [`DurableFuture::ready_at`] tells where in the history a
//! result arrived, so races ([`OrchestrationContext::when_any`]) pick the same winner on
//! every replay.
//!
//! [`OrchestrationContext::when_any`]: crate::OrchestrationContext::when_any

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use crate::error::{ActivityError, SubOrchestrationError};
use crate::failure;
use crate::payload;
use crate::replay::event_queues::{Raised, WaitSite};
use crate::replay::state::{ReplayState, lock};
use crate::replay::step::{StepKind, StepResult};

mod entities;

pub(crate) use entities::Refused;
pub use entities::{CriticalSection, EntityCall, LockRequest};

/// A future of a durable operation, which knows whether (and where in the history) its
/// result arrived. Implemented by the futures `ctx` returns; [`when_any`] and
/// [`select2`] race them.
///
/// [`when_any`]: crate::OrchestrationContext::when_any
/// [`select2`]: crate::OrchestrationContext::select2
pub trait DurableFuture: Future + Unpin {
    /// The history position of this operation's result, if it has arrived.
    fn ready_at(&self) -> Option<u64>;
}

/// Decodes a step's output, stalling the instance if it no longer decodes.
fn decode_or_stop<T: DeserializeOwned>(state: &mut ReplayState, bytes: &[u8]) -> Option<T> {
    match payload::decode(bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            state.stall_payload(failure::undecodable(e));
            None
        }
    }
}

fn step_name(state: &ReplayState, seq: u64) -> String {
    match state.step_kind(seq) {
        Some(StepKind::Activity(name) | StepKind::SubOrchestration(name)) => name.clone(),
        _ => String::new(),
    }
}

/// The future of an activity call: its output, or an [`ActivityError`].
#[must_use = "an activity call does nothing for the orchestrator unless awaited"]
pub struct ActivityCall<T> {
    state: Arc<Mutex<ReplayState>>,
    seq: u64,
    _output: PhantomData<fn() -> T>,
}

impl<T> ActivityCall<T> {
    pub(crate) fn new(state: Arc<Mutex<ReplayState>>, seq: u64) -> Self {
        Self {
            state,
            seq,
            _output: PhantomData,
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

impl<T> std::fmt::Debug for ActivityCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityCall")
            .field("seq", &self.seq)
            .finish()
    }
}

impl<T: DeserializeOwned> Future for ActivityCall<T> {
    type Output = Result<T, ActivityError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.state);
        match state.take_result(self.seq) {
            None => Poll::Pending,
            Some(StepResult::Err { attempt, failure }) => {
                let name = step_name(&state, self.seq);
                Poll::Ready(Err(ActivityError::new(name, attempt, failure)))
            }
            Some(StepResult::Ok(bytes)) => match decode_or_stop(&mut state, &bytes) {
                Some(output) => Poll::Ready(Ok(output)),
                None => Poll::Pending,
            },
        }
    }
}

impl<T: DeserializeOwned> DurableFuture for ActivityCall<T> {
    fn ready_at(&self) -> Option<u64> {
        lock(&self.state).ready_at(self.seq)
    }
}

/// The future of a sub-orchestration: its output, or a [`SubOrchestrationError`].
#[must_use = "a sub-orchestration does nothing for the orchestrator unless awaited"]
pub struct SubOrchestrationCall<T> {
    state: Arc<Mutex<ReplayState>>,
    seq: u64,
    instance: String,
    /// Set when the start was refused (inside a critical section): never started.
    refused: Option<SubOrchestrationError>,
    _output: PhantomData<fn() -> T>,
}

impl<T> SubOrchestrationCall<T> {
    pub(crate) fn new(state: Arc<Mutex<ReplayState>>, seq: u64, instance: String) -> Self {
        Self {
            state,
            seq,
            instance,
            refused: None,
            _output: PhantomData,
        }
    }

    /// A start answered at once with `error`, never made.
    pub(crate) fn refused(state: Arc<Mutex<ReplayState>>, error: SubOrchestrationError) -> Self {
        Self {
            state,
            seq: u64::MAX,
            instance: String::new(),
            refused: Some(error),
            _output: PhantomData,
        }
    }

    /// The child's instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }
}

impl<T> std::fmt::Debug for SubOrchestrationCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubOrchestrationCall")
            .field("seq", &self.seq)
            .field("instance", &self.instance)
            .finish()
    }
}

impl<T: DeserializeOwned> Future for SubOrchestrationCall<T> {
    type Output = Result<T, SubOrchestrationError>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(error) = self.refused.take() {
            return Poll::Ready(Err(error));
        }
        let mut state = lock(&self.state);
        match state.take_result(self.seq) {
            None => Poll::Pending,
            Some(StepResult::Err { failure, .. }) => {
                let name = step_name(&state, self.seq);
                Poll::Ready(Err(SubOrchestrationError::new(
                    name,
                    self.instance.clone(),
                    failure,
                )))
            }
            Some(StepResult::Ok(bytes)) => match decode_or_stop(&mut state, &bytes) {
                Some(output) => Poll::Ready(Ok(output)),
                None => Poll::Pending,
            },
        }
    }
}

impl<T: DeserializeOwned> DurableFuture for SubOrchestrationCall<T> {
    fn ready_at(&self) -> Option<u64> {
        if self.refused.is_some() {
            return Some(0);
        }
        lock(&self.state).ready_at(self.seq)
    }
}

/// The future of a durable timer: resolves when it has fired, never earlier, also across
/// restarts.
#[must_use = "a timer does nothing unless awaited"]
pub struct Timer {
    state: Arc<Mutex<ReplayState>>,
    seq: u64,
}

impl Timer {
    pub(crate) fn new(state: Arc<Mutex<ReplayState>>, seq: u64) -> Self {
        Self { state, seq }
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").field("seq", &self.seq).finish()
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        match lock(&self.state).take_result(self.seq) {
            Some(_) => Poll::Ready(()),
            None => Poll::Pending,
        }
    }
}

impl DurableFuture for Timer {
    fn ready_at(&self) -> Option<u64> {
        lock(&self.state).ready_at(self.seq)
    }
}

/// The future of [`wait_event`](crate::OrchestrationContext::wait_event): the payload of
/// the next event of its name.
#[must_use = "a wait does nothing unless awaited"]
pub struct EventWait<T> {
    state: Arc<Mutex<ReplayState>>,
    name: String,
    ticket: u64,
    done: bool,
    _payload: PhantomData<fn() -> T>,
}

impl<T> EventWait<T> {
    pub(crate) fn new(state: Arc<Mutex<ReplayState>>, name: &str, site: WaitSite) -> Self {
        let ticket = lock(&state).events.claim(name, site);
        Self {
            state,
            name: name.to_string(),
            ticket,
            done: false,
            _payload: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for EventWait<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWait")
            .field("name", &self.name)
            .finish()
    }
}

impl<T: DeserializeOwned> EventWait<T> {
    /// Sets aside the event at `index`, whose payload did not decode as `T`; false if the
    /// instance stalls instead (see [`ReplayState::set_aside_event`]).
    fn set_aside(
        state: &mut ReplayState,
        name: &str,
        index: u32,
        payload: Vec<u8>,
        error: payload::PayloadError,
    ) -> bool {
        state.set_aside_event(name, index, payload, failure::undecodable(error))
    }
}

impl<T: DeserializeOwned> Future for EventWait<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        let mut state = lock(&this.state);
        loop {
            if state.is_stopped() {
                return Poll::Pending;
            }
            let Some(Raised {
                position,
                index,
                payload,
            }) = state.events.take(&this.name, this.ticket)
            else {
                return Poll::Pending;
            };
            match payload::decode(&payload) {
                Ok(value) => {
                    state.took(position);
                    state.events.finish(&this.name, this.ticket);
                    this.done = true;
                    return Poll::Ready(value);
                }
                Err(e) => {
                    // The ticket waits again, for the next event of its name.
                    state.events.wait_again(&this.name, this.ticket);
                    if !Self::set_aside(&mut state, &this.name, index, payload, e) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl<T: DeserializeOwned> DurableFuture for EventWait<T> {
    /// The position of the next event this wait can take: events before it that do not
    /// decode as `T` are set aside first, so a race never picks a wait that then has
    /// nothing to give.
    fn ready_at(&self) -> Option<u64> {
        if self.done {
            return None;
        }
        let mut state = lock(&self.state);
        loop {
            if state.is_stopped() {
                return None;
            }
            let event = state.events.peek_event(&self.name, self.ticket)?;
            let error = match payload::decode::<T>(&event.payload) {
                Ok(_) => return Some(event.position),
                Err(e) => e,
            };
            let (index, bytes) = (event.index, event.payload.clone());
            if !Self::set_aside(&mut state, &self.name, index, bytes, error) {
                return None;
            }
        }
    }
}

impl<T> Drop for EventWait<T> {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.state).events.release(&self.name, self.ticket);
        }
    }
}

/// The future of [`continue_as_new`](crate::OrchestrationContext::continue_as_new): never
/// resolves; the turn ends the current generation instead. Its output type is whatever
/// the orchestrator returns, so `return ctx.continue_as_new(next).await;` type-checks.
#[must_use = "continue_as_new does nothing unless awaited"]
pub struct ContinueAsNew<T> {
    _output: PhantomData<fn() -> T>,
}

impl<T> ContinueAsNew<T> {
    pub(crate) fn new() -> Self {
        Self {
            _output: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for ContinueAsNew<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContinueAsNew")
    }
}

impl<T> Future for ContinueAsNew<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        Poll::Pending
    }
}
