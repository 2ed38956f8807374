//! What an entity operation sees and does besides its state: its id, and the one-way
//! signals it sends.

use std::time::SystemTime;

use serde::Serialize;

use crate::entity::Entity;
use crate::entity::error::SignalRefusal;
use crate::entity::id::EntityId;
use crate::entity::operation::Operation;
use crate::payload;

/// The context of one entity operation: the entity's [`EntityId`], and the signals the
/// operation sends to entities (itself included), now or at a time.
///
/// An operation takes it after its receiver, as `&mut EntityContext` (to send signals) or
/// `&EntityContext` (to read its id; the only form a read, `&self`, may take, so a read
/// sends nothing). `&mut` rather than a shared context with interior mutability: recording
/// a signal changes what the operation's turn commits, and the borrow says so.
///
/// Signals are recorded, not sent: [`Entity::dispatch`] returns them beside the new state,
/// and the runtime commits them with it, so they go out exactly when the state change
/// lands. Those of an operation that fails (returns `Err` or panics) are dropped with its
/// state change (Durable Functions: "undoes all internal effects of an operation (sent
/// signals, and state creation, deletion, or modification)"). A signal is one-way: its
/// sender learns nothing of its outcome.
#[derive(Debug)]
pub struct EntityContext {
    id: EntityId,
    signals: Vec<Signal>,
    /// The first signal that could not be recorded; it fails the operation.
    refused: Option<SignalRefusal>,
}

/// A one-way message to an entity, recorded by [`EntityContext::signal`] or
/// [`EntityContext::signal_at`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Signal {
    /// The entity it goes to.
    pub target: EntityId,
    /// The operation it runs there ([`Operation::name`]).
    pub operation: &'static str,
    /// The operation's input, as JSON.
    pub input: Vec<u8>,
    /// When it is to be delivered: `None` for now, else not before this time (Durable
    /// Functions' scheduled signals; DTFx `SignalEntityOptions.SignalTime`).
    pub at: Option<SystemTime>,
}

/// What names the entity a signal goes to: its key (`"bob"`, the type coming from the
/// operation) or its whole [`EntityId`].
pub trait IntoEntityId<E: Entity> {
    /// The id of the entity of type `E` this names.
    ///
    /// # Errors
    ///
    /// The id itself, if it names an entity of another type than `E`.
    fn into_entity_id(self) -> Result<EntityId, EntityId>;
}

impl<E: Entity> IntoEntityId<E> for &str {
    fn into_entity_id(self) -> Result<EntityId, EntityId> {
        Ok(EntityId::of::<E>(self))
    }
}

impl<E: Entity> IntoEntityId<E> for String {
    fn into_entity_id(self) -> Result<EntityId, EntityId> {
        Ok(EntityId::of::<E>(self))
    }
}

impl<E: Entity> IntoEntityId<E> for &String {
    fn into_entity_id(self) -> Result<EntityId, EntityId> {
        Ok(EntityId::of::<E>(self.as_str()))
    }
}

impl<E: Entity> IntoEntityId<E> for EntityId {
    fn into_entity_id(self) -> Result<EntityId, EntityId> {
        if self.is_of::<E>() {
            Ok(self)
        } else {
            Err(self)
        }
    }
}

impl<E: Entity> IntoEntityId<E> for &EntityId {
    fn into_entity_id(self) -> Result<EntityId, EntityId> {
        <EntityId as IntoEntityId<E>>::into_entity_id(self.clone())
    }
}

impl EntityContext {
    /// The context of an operation on entity `id`, with no signals recorded. The runtime
    /// makes one per operation; make one yourself to unit-test an operation through
    /// [`Operation::run`].
    pub fn new(id: EntityId) -> Self {
        EntityContext {
            id,
            signals: Vec::new(),
            refused: None,
        }
    }

    /// The id of the entity the operation runs on.
    pub fn id(&self) -> &EntityId {
        &self.id
    }

    /// The entity's key: `alice` in `@Account@alice`.
    pub fn key(&self) -> &str {
        self.id.key()
    }

    /// Records a signal: `operation` with `input`, to the entity `target` names (a key,
    /// or an [`EntityId`] of the operation's entity type), delivered once this operation
    /// commits. `ctx.signal("bob", Account::deposit, 10)`.
    ///
    /// An input that does not encode, or an id of another entity type, fails this
    /// operation when it returns ([`EntityError::BadSignal`](crate::EntityError::BadSignal)),
    /// so its effects are dropped together.
    pub fn signal<T, I, O, Er>(
        &mut self,
        target: impl IntoEntityId<T>,
        operation: Operation<T, I, O, Er>,
        input: I,
    ) where
        T: Entity,
        I: Serialize,
    {
        self.record(target, operation.name(), &input, None);
    }

    /// Like [`signal`](Self::signal), delivered not before `at` (which may be days
    /// ahead: the runtime stores it). A time in the past means now.
    pub fn signal_at<T, I, O, Er>(
        &mut self,
        target: impl IntoEntityId<T>,
        operation: Operation<T, I, O, Er>,
        input: I,
        at: SystemTime,
    ) where
        T: Entity,
        I: Serialize,
    {
        self.record(target, operation.name(), &input, Some(at));
    }

    /// The signals recorded so far, in the order they were sent.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    fn record<T: Entity, I: Serialize>(
        &mut self,
        target: impl IntoEntityId<T>,
        operation: &'static str,
        input: &I,
        at: Option<SystemTime>,
    ) {
        if self.refused.is_some() {
            return;
        }
        let target = match target.into_entity_id() {
            Ok(target) => target,
            Err(target) => {
                self.refused = Some(SignalRefusal::WrongEntity {
                    target,
                    operation,
                    expected: T::NAME,
                });
                return;
            }
        };
        if let Err(e) = crate::instance_id::check_instance_id(&target.to_string()) {
            self.refused = Some(SignalRefusal::InvalidTarget {
                target,
                operation,
                reason: e.to_string(),
            });
            return;
        }
        match payload::encode(input) {
            Ok(input) => self.signals.push(Signal {
                target,
                operation,
                input,
                at,
            }),
            Err(error) => {
                self.refused = Some(SignalRefusal::UnencodableInput {
                    target,
                    operation,
                    error,
                });
            }
        }
    }

    /// The recorded signals, or the first one refused.
    pub(crate) fn finish(self) -> Result<Vec<Signal>, SignalRefusal> {
        match self.refused {
            None => Ok(self.signals),
            Some(refused) => Err(refused),
        }
    }
}
