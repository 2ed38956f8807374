//! The futures of an orchestration's entity operations: a call's result
//! ([`EntityCall`]), a lock request ([`LockRequest`]) and the critical section it opens
//! ([`CriticalSection`]).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use durable_store::{Failure, FailureKind};
use serde::de::DeserializeOwned;

use super::{DurableFuture, decode_or_stop};
use crate::entity::EntityId;
use crate::error::{EntityCallError, LockRuleViolation};
use crate::payload;
use crate::replay::state::{ReplayState, lock};
use crate::replay::step::StepResult;

/// Why an operation was answered at once, without a step.
#[derive(Debug)]
pub(crate) enum Refused {
    /// A rule of critical sections.
    Rule(LockRuleViolation),
    /// The call cannot be sent (an id of another entity type).
    Failure(Failure),
}

/// The future of [`call_entity`](crate::OrchestrationContext::call_entity): the
/// operation's output `O`, or an [`EntityCallError`] carrying its error `Er`.
#[must_use = "an entity call does nothing for the orchestrator unless awaited"]
pub struct EntityCall<O, Er> {
    state: Arc<Mutex<ReplayState>>,
    /// The call's step; `None` if it was refused.
    seq: Option<u64>,
    entity: EntityId,
    operation: &'static str,
    refused: Option<Refused>,
    _output: PhantomData<fn() -> (O, Er)>,
}

impl<O, Er> EntityCall<O, Er> {
    /// The call of step `seq`.
    pub(crate) fn new(
        state: Arc<Mutex<ReplayState>>,
        seq: u64,
        entity: EntityId,
        operation: &'static str,
    ) -> Self {
        Self {
            state,
            seq: Some(seq),
            entity,
            operation,
            refused: None,
            _output: PhantomData,
        }
    }

    /// A call answered at once with `refused`, never sent.
    pub(crate) fn refused(
        state: Arc<Mutex<ReplayState>>,
        entity: EntityId,
        operation: &'static str,
        refused: Refused,
    ) -> Self {
        Self {
            state,
            seq: None,
            entity,
            operation,
            refused: Some(refused),
            _output: PhantomData,
        }
    }

    /// The entity called.
    pub fn entity(&self) -> &EntityId {
        &self.entity
    }
}

impl<O, Er> std::fmt::Debug for EntityCall<O, Er> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityCall")
            .field("seq", &self.seq)
            .field("entity", &self.entity)
            .field("operation", &self.operation)
            .finish()
    }
}

impl<O: DeserializeOwned, Er: DeserializeOwned> Future for EntityCall<O, Er> {
    type Output = Result<O, EntityCallError<Er>>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let operation = self.operation.to_string();
        if let Some(refused) = self.refused.take() {
            let entity = self.entity.clone();
            return Poll::Ready(Err(match refused {
                Refused::Rule(violation) => EntityCallError::refused(entity, operation, violation),
                Refused::Failure(failure) => {
                    EntityCallError::failed(entity, operation, failure, None)
                }
            }));
        }
        let Some(seq) = self.seq else {
            return Poll::Pending;
        };
        let mut state = lock(&self.state);
        match state.take_result(seq) {
            None => Poll::Pending,
            Some(StepResult::Err { failure, .. }) => {
                // An error value that no longer decodes as `Er` is left out; its message
                // is kept.
                let error = match &failure.kind {
                    FailureKind::Returned { payload } => payload::decode(payload).ok(),
                    _ => None,
                };
                let entity = self.entity.clone();
                Poll::Ready(Err(EntityCallError::failed(
                    entity, operation, failure, error,
                )))
            }
            Some(StepResult::Ok(bytes)) => match decode_or_stop(&mut state, &bytes) {
                Some(output) => Poll::Ready(Ok(output)),
                None => Poll::Pending,
            },
        }
    }
}

impl<O: DeserializeOwned, Er: DeserializeOwned> DurableFuture for EntityCall<O, Er> {
    /// A refused call is ready at once, ahead of anything in the history.
    fn ready_at(&self) -> Option<u64> {
        match self.seq {
            Some(seq) => lock(&self.state).ready_at(seq),
            None => self.refused.as_ref().map(|_| 0),
        }
    }
}

/// The future of [`lock`](crate::OrchestrationContext::lock): the [`CriticalSection`]
/// once every entity is locked for this orchestration, or the [`LockRuleViolation`]
/// that refused it.
///
/// Dropped before it is granted (it lost a race with a timer), the request is released:
/// every entity it locked, or would have locked, is unlocked.
#[must_use = "a lock request does nothing unless awaited"]
pub struct LockRequest {
    state: Arc<Mutex<ReplayState>>,
    /// The request's step; `None` if it was refused.
    seq: Option<u64>,
    entities: Vec<EntityId>,
    refused: Option<LockRuleViolation>,
    /// Whether it resolved (into a section, which then owns the release).
    done: bool,
}

impl LockRequest {
    /// The lock request of step `seq` on `entities`, in lock order.
    pub(crate) fn new(state: Arc<Mutex<ReplayState>>, seq: u64, entities: Vec<EntityId>) -> Self {
        Self {
            state,
            seq: Some(seq),
            entities,
            refused: None,
            done: false,
        }
    }

    /// A request refused at once by `violation`, never sent.
    pub(crate) fn refused(state: Arc<Mutex<ReplayState>>, violation: LockRuleViolation) -> Self {
        Self {
            state,
            seq: None,
            entities: Vec::new(),
            refused: Some(violation),
            done: false,
        }
    }

    /// The entities it locks, in the order they are locked (sorted, no duplicates).
    pub fn entities(&self) -> &[EntityId] {
        &self.entities
    }
}

impl std::fmt::Debug for LockRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockRequest")
            .field("seq", &self.seq)
            .field("entities", &self.entities)
            .finish()
    }
}

impl Future for LockRequest {
    type Output = Result<CriticalSection, LockRuleViolation>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(violation) = self.refused.take() {
            self.done = true;
            return Poll::Ready(Err(violation));
        }
        let Some(seq) = self.seq.filter(|_| !self.done) else {
            return Poll::Pending;
        };
        if lock(&self.state).take_result(seq).is_none() {
            return Poll::Pending;
        }
        self.done = true;
        Poll::Ready(Ok(CriticalSection {
            state: self.state.clone(),
            lock_seq: seq,
            entities: std::mem::take(&mut self.entities),
        }))
    }
}

impl DurableFuture for LockRequest {
    fn ready_at(&self) -> Option<u64> {
        if self.done {
            return None;
        }
        match self.seq {
            Some(seq) => lock(&self.state).ready_at(seq),
            None => self.refused.as_ref().map(|_| 0),
        }
    }
}

impl Drop for LockRequest {
    fn drop(&mut self) {
        if let (Some(seq), false) = (self.seq, self.done) {
            lock(&self.state).release_locks(seq);
        }
    }
}

/// A critical section: the entities of a granted [`lock`](crate::OrchestrationContext::lock)
/// are locked for this orchestration, and run only its calls until the section ends.
///
/// It ends when [`release`](Self::release)d or dropped (leaving the block that holds it),
/// or when the orchestration ends (completes, fails, is terminated or continues as new),
/// whichever comes first. The release is recorded in the history and each entity is
/// unlocked; operations that waited for it then run in the order they arrived. A restart
/// inside a section resumes inside it: replay rebuilds it from the history.
#[must_use = "a critical section ends when dropped; bind it: `let section = ctx.lock(..).await?;`"]
pub struct CriticalSection {
    state: Arc<Mutex<ReplayState>>,
    lock_seq: u64,
    entities: Vec<EntityId>,
}

impl CriticalSection {
    /// The entities it holds, in lock order.
    pub fn entities(&self) -> &[EntityId] {
        &self.entities
    }

    /// Ends the section: records the release and unlocks every entity (what dropping it
    /// does, said at the call site).
    pub fn release(self) {}
}

impl std::fmt::Debug for CriticalSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriticalSection")
            .field("lock_seq", &self.lock_seq)
            .field("entities", &self.entities)
            .finish()
    }
}

impl Drop for CriticalSection {
    fn drop(&mut self) {
        lock(&self.state).release_locks(self.lock_seq);
    }
}
