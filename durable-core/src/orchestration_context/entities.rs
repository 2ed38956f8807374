//! An orchestration's entity operations: two-way calls, one-way signals, and critical
//! sections (locks), each a step of the history.
//!
//! # What an orchestration may rely on
//!
//! - A call ([`call_entity`](OrchestrationContext::call_entity)) and a signal
//!   ([`signal_entity`](OrchestrationContext::signal_entity)) are recorded in the history
//!   as steps and sent in the commit that records them; a replay serves the call's result
//!   from the history and sends nothing again. A replay that calls or signals another
//!   entity, or another operation, at a step is a nondeterminism, as for activities.
//! - Operations on one entity run one at a time; those one orchestration sends to one
//!   entity run in the order it sent them (a signal at a time runs at its time).
//! - A call's result says what the operation returned, or why it failed
//!   ([`EntityCallError`](crate::EntityCallError)): its own `Err`, a panic, an unknown operation, an input that
//!   does not decode. An operation that fails leaves the entity's state as it was.
//! - A critical section ([`lock`](OrchestrationContext::lock)) locks its entities in one
//!   global order (sorted by [`EntityId`]: type name, then key), one after the other, so
//!   two orchestrations locking overlapping sets never deadlock. While it holds them, the
//!   entities run only this orchestration's calls; everything else sent to them waits,
//!   durably, and runs in arrival order once the section ends. The section ends when its
//!   [`CriticalSection`](crate::CriticalSection) is released or dropped, or when the orchestration completes,
//!   fails, is terminated or continues as new (what it holds or still waits for is then
//!   unlocked in the commit that ends it). A restart inside a section resumes inside it.
//!
//! # The rules of a section
//!
//! As Durable Functions' `LockingRulesViolationException` has them: inside a section (from
//! the `lock` call until its release, granted or not yet), calling an entity it does not
//! hold, signalling one it holds, a nested `lock`, and starting a sub-orchestration are
//! refused with a [`LockRuleViolation`]; nothing is recorded or sent, and the code goes
//! on. `#[orchestrator]` refuses a nested `lock` and a sub-orchestration at compile time
//! where it can see the section's guard in scope.

use std::panic::Location;
use std::time::SystemTime;

use serde::Serialize;

use super::OrchestrationContext;
use crate::clock::millis;
use crate::durable_future::{EntityCall, LockRequest, Refused};
use crate::entity::{Entity, EntityId, IntoEntityId, Operation};
use crate::error::LockRuleViolation;
use crate::failure;
use crate::instance_id::check_instance_id;
use crate::replay::state::lock as lock_state;
use crate::replay::step::StepRequest;

/// The ids a section holds, from their instance-id form.
pub(super) fn entity_ids(locked: &[String]) -> Vec<EntityId> {
    locked.iter().filter_map(|id| id.parse().ok()).collect()
}

impl OrchestrationContext {
    /// Calls `operation` of the entity `entity` names (its key, or its [`EntityId`]) with
    /// `input`, two-way: await the returned future for the operation's output. The call
    /// is recorded in the history and sent when the turn commits; the entity is made if
    /// it does not exist (from its initial state).
    ///
    /// The input is JSON and must fit the runtime's payload limit, as an activity's.
    ///
    /// ```
    /// use durable_core::{EntityCallError, OrchestrationContext, entity, orchestrator};
    ///
    /// #[derive(Default, serde::Serialize, serde::Deserialize)]
    /// struct Account {
    ///     balance: i64,
    /// }
    ///
    /// #[entity]
    /// impl Account {
    ///     pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
    ///         if amount > self.balance {
    ///             return Err(format!("insufficient funds: {}", self.balance));
    ///         }
    ///         self.balance -= amount;
    ///         Ok(self.balance)
    ///     }
    /// }
    ///
    /// #[orchestrator]
    /// async fn pay(ctx: OrchestrationContext, amount: i64) -> Result<i64, String> {
    ///     match ctx.call_entity(Account::withdraw, "alice", amount).await {
    ///         Ok(left) => Ok(left),
    ///         Err(e) if e.error().is_some() => Ok(-1), // the operation's own `Err`
    ///         Err(e) => Err(e.into()),
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// The future yields an [`EntityCallError`](crate::EntityCallError): the operation's `Err` (typed, `Er`), a
    /// panic, an unknown operation, an input that does not decode; a call inside a
    /// critical section to an entity it does not hold
    /// ([`LockRuleViolation::CallNotLocked`], not sent); an [`EntityId`] of another type
    /// than the operation's, or one the store cannot hold (not sent).
    #[track_caller]
    pub fn call_entity<E, I, O, Er>(
        &self,
        operation: Operation<E, I, O, Er>,
        entity: impl IntoEntityId<E>,
        input: I,
    ) -> EntityCall<O, Er>
    where
        E: Entity,
        I: Serialize,
    {
        let caller = Location::caller();
        let name = operation.name();
        let refuse = |id: EntityId, refused: Refused| {
            EntityCall::refused(self.state.clone(), id, name, refused)
        };
        let id = match entity.into_entity_id() {
            Ok(id) => id,
            Err(other) => {
                let message = format!(
                    "`{other}` is not an entity of type `{}`; name it by its key, or by an id `@{}@key`",
                    E::NAME,
                    E::NAME
                );
                return refuse(other, Refused::Failure(failure::rejected(message)));
            }
        };
        let target = id.to_string();
        if let Err(e) = check_instance_id(&target) {
            return refuse(id, Refused::Failure(failure::rejected(e.to_string())));
        }
        let mut state = lock_state(&self.state);
        if let Some((_, locked)) = state.open_section()
            && !locked.contains(&target)
        {
            let violation = LockRuleViolation::CallNotLocked {
                entity: id.clone(),
                operation: name.to_string(),
                locked: entity_ids(locked),
            };
            drop(state);
            return refuse(id, Refused::Rule(violation));
        }
        let site = self.site(&state, caller);
        let what = || format!("the input of operation `{name}` of entity `{target}`");
        let input = Self::encode_step(&mut state, &input, what);
        let request = StepRequest::EntityCall {
            entity: target,
            operation: name.to_string(),
            input,
        };
        let seq = state.issue(site, request);
        drop(state);
        EntityCall::new(self.state.clone(), seq, id, name)
    }

    /// Signals `operation` to the entity `entity` names (its key, or its [`EntityId`])
    /// with `input`, one-way: recorded in the history, sent when the turn commits; the
    /// orchestration learns nothing of its outcome. The entity is made if it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// [`LockRuleViolation::SignalLocked`] inside a critical section that holds the
    /// entity (nothing is recorded or sent).
    ///
    /// # Panics
    ///
    /// If `entity` is an [`EntityId`] of another type than the operation's, or one the
    /// store cannot hold (over 256 bytes, control characters): the orchestration fails,
    /// naming it.
    #[track_caller]
    pub fn signal_entity<E, I, O, Er>(
        &self,
        operation: Operation<E, I, O, Er>,
        entity: impl IntoEntityId<E>,
        input: I,
    ) -> Result<(), LockRuleViolation>
    where
        E: Entity,
        I: Serialize,
    {
        self.signal(operation, entity, input, None, Location::caller())
    }

    /// Like [`signal_entity`](Self::signal_entity), run not before `at` (which may be days
    /// ahead: the runtime stores it; a time past means now). The time is recorded with
    /// the step, so a replay sends nothing again.
    ///
    /// # Errors
    ///
    /// As [`signal_entity`](Self::signal_entity).
    ///
    /// # Panics
    ///
    /// As [`signal_entity`](Self::signal_entity).
    #[track_caller]
    pub fn signal_entity_at<E, I, O, Er>(
        &self,
        operation: Operation<E, I, O, Er>,
        entity: impl IntoEntityId<E>,
        input: I,
        at: SystemTime,
    ) -> Result<(), LockRuleViolation>
    where
        E: Entity,
        I: Serialize,
    {
        self.signal(operation, entity, input, Some(at), Location::caller())
    }

    fn signal<E, I, O, Er>(
        &self,
        operation: Operation<E, I, O, Er>,
        entity: impl IntoEntityId<E>,
        input: I,
        at: Option<SystemTime>,
        caller: &Location<'_>,
    ) -> Result<(), LockRuleViolation>
    where
        E: Entity,
        I: Serialize,
    {
        let name = operation.name();
        let id = entity.into_entity_id().unwrap_or_else(|other| {
            panic!(
                "`ctx.signal_entity`: `{other}` is not an entity of type `{}`, whose operation \
                 `{name}` it signals; name it by its key, or by an id `@{}@key`",
                E::NAME,
                E::NAME
            )
        });
        let target = id.to_string();
        if let Err(e) = check_instance_id(&target) {
            panic!("`ctx.signal_entity`: the entity id is not one the store can hold: {e}");
        }
        let mut state = lock_state(&self.state);
        if let Some((_, locked)) = state.open_section()
            && locked.contains(&target)
        {
            return Err(LockRuleViolation::SignalLocked {
                entity: id,
                operation: name.to_string(),
            });
        }
        let site = self.site(&state, caller);
        let what = || format!("the input of operation `{name}` signalled to entity `{target}`");
        let input = Self::encode_step(&mut state, &input, what);
        let request = StepRequest::EntitySignal {
            entity: target,
            operation: name.to_string(),
            input,
            at_ms: at.map(millis),
        };
        state.issue(site, request);
        Ok(())
    }

    /// Locks `entities` (any entity types) for this orchestration: await the returned
    /// future for the [`CriticalSection`](crate::CriticalSection), granted once every entity is locked. They are
    /// locked in one global order (sorted, duplicates dropped), one after the other, so
    /// two orchestrations locking overlapping sets never deadlock.
    ///
    /// While the section holds them, the entities run only this orchestration's calls,
    /// whatever else is sent to them waits; see the [rules](crate::LockRuleViolation)
    /// of a section. It ends when the [`CriticalSection`](crate::CriticalSection) is released or dropped, or when
    /// the orchestration ends.
    ///
    /// ```
    /// use durable_core::{EntityId, OrchestrationContext, entity, orchestrator};
    ///
    /// #[derive(Default, serde::Serialize, serde::Deserialize)]
    /// struct Account {
    ///     balance: i64,
    /// }
    ///
    /// #[entity]
    /// impl Account {
    ///     pub fn add(&mut self, amount: i64) -> Result<i64, String> {
    ///         if self.balance + amount < 0 {
    ///             return Err("insufficient funds".into());
    ///         }
    ///         self.balance += amount;
    ///         Ok(self.balance)
    ///     }
    /// }
    ///
    /// #[orchestrator]
    /// async fn transfer(ctx: OrchestrationContext, amount: i64) -> Result<(), String> {
    ///     let from = EntityId::of::<Account>("alice");
    ///     let to = EntityId::of::<Account>("bob");
    ///     let section = ctx.lock([from.clone(), to.clone()]).await?;
    ///     ctx.call_entity(Account::add, from, -amount).await?;
    ///     ctx.call_entity(Account::add, to, amount).await?;
    ///     section.release();
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// The future yields [`LockRuleViolation::NestedLock`] inside a section (nothing is
    /// recorded or sent), [`LockRuleViolation::NoEntities`] for an empty set.
    ///
    /// # Panics
    ///
    /// If an id is one the store cannot hold (over 256 bytes, control characters): the
    /// orchestration fails, naming it.
    #[track_caller]
    pub fn lock(&self, entities: impl IntoIterator<Item = EntityId>) -> LockRequest {
        let caller = Location::caller();
        let mut ids: Vec<EntityId> = entities.into_iter().collect();
        ids.sort();
        ids.dedup();
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        for name in &names {
            if let Err(e) = check_instance_id(name) {
                panic!("`ctx.lock`: an entity id is not one the store can hold: {e}");
            }
        }
        let mut state = lock_state(&self.state);
        let refused = if let Some((_, locked)) = state.open_section() {
            Some(LockRuleViolation::NestedLock {
                locked: entity_ids(locked),
            })
        } else if ids.is_empty() {
            Some(LockRuleViolation::NoEntities)
        } else {
            None
        };
        if let Some(violation) = refused {
            drop(state);
            return LockRequest::refused(self.state.clone(), violation);
        }
        let site = self.site(&state, caller);
        let request = StepRequest::EntityLock {
            entities: names.clone(),
        };
        let seq = state.issue(site, request);
        state.lock_requested(seq, &names);
        drop(state);
        LockRequest::new(self.state.clone(), seq, ids)
    }

    /// Whether the orchestration is inside a critical section (a lock requested and not
    /// released), and which entities it holds or waits for.
    pub fn locked_entities(&self) -> Option<Vec<EntityId>> {
        let state = lock_state(&self.state);
        state.open_section().map(|(_, locked)| entity_ids(locked))
    }
}
