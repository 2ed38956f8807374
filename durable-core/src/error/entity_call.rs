//! The errors of an orchestration's entity calls and critical sections:
//! [`EntityCallError`] and [`LockRuleViolation`].

use std::fmt;

use durable_store::{Failure, FailureKind};

use crate::entity::EntityId;

/// A rule of critical sections that the orchestrator broke (Durable Functions'
/// `LockingRulesViolationException`). Inside a section (from `ctx.lock(..)` until the
/// [`CriticalSection`](crate::CriticalSection) is released or dropped) an orchestrator
/// may call only the entities it locked, may not signal them (a one-way message would
/// wait behind its own lock), and may not lock again or start a sub-orchestration (which
/// could wait on what the section holds). The refused operation is not recorded and does
/// not run; the orchestrator sees this error and goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockRuleViolation {
    /// `call_entity` on an entity the section did not lock.
    #[error(
        "operation `{operation}` of entity `{entity}` is called inside a critical section \
         that did not lock it (it holds {}); lock it with the others, or call it after \
         the section is released",
        list(locked)
    )]
    CallNotLocked {
        /// The entity called.
        entity: EntityId,
        /// The operation called.
        operation: String,
        /// What the section holds.
        locked: Vec<EntityId>,
    },
    /// `signal_entity` to an entity the section locked.
    #[error(
        "operation `{operation}` is signalled to entity `{entity}`, which the critical section \
         holds; call it (`call_entity`) inside the section, or signal it after the section \
         is released"
    )]
    SignalLocked {
        /// The entity signalled.
        entity: EntityId,
        /// The operation signalled.
        operation: String,
    },
    /// `lock` inside a critical section.
    #[error(
        "`lock` inside a critical section (it holds {}); lock every entity in one `lock`, \
         or release the section first",
        list(locked)
    )]
    NestedLock {
        /// What the section holds.
        locked: Vec<EntityId>,
    },
    /// A sub-orchestration started inside a critical section.
    #[error(
        "sub-orchestration `{orchestrator}` is started inside a critical section (it holds \
         {}); start it after the section is released",
        list(locked)
    )]
    SubOrchestration {
        /// The orchestrator asked for.
        orchestrator: String,
        /// What the section holds.
        locked: Vec<EntityId>,
    },
    /// `lock` with no entity.
    #[error("`lock` was given no entity; name at least one")]
    NoEntities,
}

/// `@A@a, @A@b`.
fn list(ids: &[EntityId]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    ids.join(", ")
}

impl From<LockRuleViolation> for String {
    fn from(e: LockRuleViolation) -> String {
        e.to_string()
    }
}

/// A call of an entity operation that failed, as the orchestrator sees it (the mirror of
/// [`ActivityError`](crate::ActivityError)): the operation returned `Err` (its error,
/// typed: [`error`](Self::error)), panicked, could not run (an unknown operation, an
/// input that does not decode as its type), or the call was refused by a rule of
/// critical sections ([`lock_rule_violation`](Self::lock_rule_violation)). Whatever
/// failed, the entity's state and the signals of the operation are as they were.
///
/// Match on it to go on, or let `?` fail the orchestration (it converts into `String`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityCallError<Er> {
    entity: EntityId,
    operation: String,
    failure: Failure,
    error: Option<Er>,
    violation: Option<LockRuleViolation>,
}

impl<Er> EntityCallError<Er> {
    /// The failure of operation `operation` of `entity`, whose `Err` value (when it
    /// returned one) is `error`.
    pub(crate) fn failed(
        entity: EntityId,
        operation: String,
        failure: Failure,
        error: Option<Er>,
    ) -> Self {
        Self {
            entity,
            operation,
            failure,
            error,
            violation: None,
        }
    }

    /// A call refused by a rule of critical sections.
    pub(crate) fn refused(
        entity: EntityId,
        operation: String,
        violation: LockRuleViolation,
    ) -> Self {
        let failure = crate::failure::rejected(violation.to_string());
        Self {
            entity,
            operation,
            failure,
            error: None,
            violation: Some(violation),
        }
    }

    /// The entity called.
    pub fn entity(&self) -> &EntityId {
        &self.entity
    }

    /// The operation called.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The error's message: the `Display` of the operation's error, the panic message,
    /// or why it could not run or was refused.
    pub fn message(&self) -> &str {
        &self.failure.message
    }

    /// The error the operation returned, if it returned `Err`.
    pub fn error(&self) -> Option<&Er> {
        self.error.as_ref()
    }

    /// The error the operation returned, if it returned `Err`, taken.
    pub fn into_error(self) -> Option<Er> {
        self.error
    }

    /// Whether the operation panicked.
    pub fn is_panic(&self) -> bool {
        self.failure.kind == FailureKind::Panicked
    }

    /// Whether the entity has no operation of that name (the entity's code was deployed
    /// without it).
    pub fn is_unknown_operation(&self) -> bool {
        matches!(self.failure.kind, FailureKind::Unregistered { .. })
    }

    /// Whether the input did not decode as the operation's input type.
    pub fn is_undecodable_input(&self) -> bool {
        matches!(self.failure.kind, FailureKind::Decode { .. })
    }

    /// The rule of critical sections the call broke, if it was refused for one.
    pub fn lock_rule_violation(&self) -> Option<&LockRuleViolation> {
        self.violation.as_ref()
    }

    /// The stored failure.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl<Er> fmt::Display for EntityCallError<Er> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(violation) = &self.violation {
            return write!(f, "entity call refused: {violation}");
        }
        let what = if self.is_panic() {
            "panicked"
        } else {
            "failed"
        };
        write!(
            f,
            "operation `{}` of entity `{}` {what}: {}",
            self.operation, self.entity, self.failure.message
        )
    }
}

impl<Er: fmt::Debug> std::error::Error for EntityCallError<Er> {}

impl<Er> From<EntityCallError<Er>> for String {
    fn from(e: EntityCallError<Er>) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_entity_the_operation_and_the_rule() {
        let alice = EntityId::new("Account", "alice").unwrap();
        let bob = EntityId::new("Account", "bob").unwrap();
        let failure = crate::failure::returned(b"\"low\"".to_vec(), "low".into());
        let e = EntityCallError::failed(alice.clone(), "withdraw".into(), failure, Some("low"));
        assert_eq!(
            e.to_string(),
            "operation `withdraw` of entity `@Account@alice` failed: low"
        );
        assert_eq!(e.error(), Some(&"low"));
        let violation = LockRuleViolation::CallNotLocked {
            entity: bob.clone(),
            operation: "deposit".into(),
            locked: vec![alice.clone()],
        };
        let e = EntityCallError::<()>::refused(bob, "deposit".into(), violation.clone());
        assert_eq!(e.lock_rule_violation(), Some(&violation));
        let message: String = e.into();
        assert!(
            message.contains("`@Account@bob`") && message.contains("it holds @Account@alice"),
            "{message}"
        );
    }
}
