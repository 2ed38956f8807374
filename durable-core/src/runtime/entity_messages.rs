//! What an orchestration sends entities (issue 14, step 3): the messages of its entity
//! steps, added to the commit of the turn that records them.
//!
//! | step (history) | message, to | |
//! |---|---|---|
//! | `EntityCalled` | `EntityCall{caller}`, to the entity | answered by `EntityCompleted` / `EntityFailed` to `caller` |
//! | `EntitySignaled` | `EntityOperation{sender: the orchestration}`, to the entity | what an entity's own signal sends |
//! | `EntityLockRequested` | `EntityLock{owner, position: 0}`, to the first entity | passed on by each; the last answers `EntityLockGranted` |
//! | `EntityLocksReleased` | `EntityUnlock{owner}`, to every entity of the set | also in the commit that ends the orchestration |
//!
//! The caller and the owner are a [`ParentLink`]: this run (incarnation, generation) of
//! the orchestration and the step that called or locked. Every message goes to the
//! entity's id under [`entities::recipient`], and the entity's record is made if absent
//! in the same commit ([`entities::create_if_absent`], called by the turn task): a message
//! for an instance without a record would be dropped on delivery. A lock request makes
//! the records of all its entities, so the unlocks that may follow always find them.

use durable_store::{Commit, Event, InstanceRecord, ParentLink};

use super::engine::Engine;
use super::entities;
use super::inbox::Run;
use super::outbox::Outbox;
use crate::entity::EntityId;
use crate::error::Error;
use crate::replay::locks;
use crate::replay::turn::Command;

/// The caller or lock owner that step `seq` of `run` of `instance` is.
fn owner(instance: &str, run: Run, seq: u64) -> ParentLink {
    ParentLink {
        instance: instance.to_string(),
        incarnation: run.incarnation,
        generation: run.generation,
        seq,
    }
}

/// Adds the messages of `command`, an entity command of `run` of `instance`, to `commit`
/// and `outbox`; notes in `targets` the entities whose records must exist. Returns the
/// command back if it is not an entity command.
pub(in crate::runtime) fn send(
    engine: &Engine,
    instance: &str,
    run: Run,
    command: Command,
    commit: &mut Commit,
    outbox: &mut Outbox,
    targets: &mut Vec<EntityId>,
) -> Option<Command> {
    if let Command::LockEntities { entities, .. } = &command {
        for entity in entities {
            note(targets, entity);
        }
    }
    let mut to = |entity: &str, event: Event, commit: &mut Commit| {
        note(targets, entity);
        outbox.enqueue(engine, entity, entities::recipient(), event, commit);
    };
    match command {
        Command::CallEntity {
            seq,
            entity,
            operation,
            input,
        } => {
            let caller = owner(instance, run, seq);
            let event = Event::EntityCall {
                operation,
                input,
                caller,
            };
            to(&entity, event, commit);
        }
        Command::SignalEntity {
            entity,
            operation,
            input,
            at_ms,
            ..
        } => {
            let event = entities::operation(&operation, input, Some(instance), at_ms);
            to(&entity, event, commit);
        }
        Command::LockEntities { seq, entities } => {
            // A request names one entity at least (`ctx.lock` refuses an empty one).
            let first = entities.first().cloned()?;
            let event = Event::EntityLock {
                owner: owner(instance, run, seq),
                entities,
                position: 0,
            };
            to(&first, event, commit);
        }
        Command::UnlockEntities { lock_seq, entities } => {
            for entity in &entities {
                let event = Event::EntityUnlock {
                    owner: owner(instance, run, lock_seq),
                };
                to(entity, event, commit);
            }
        }
        other => return Some(other),
    }
    None
}

/// Notes that `entity` (an instance id) must have a record.
fn note(targets: &mut Vec<EntityId>, entity: &str) {
    match entity.parse::<EntityId>() {
        Ok(id) if !targets.contains(&id) => targets.push(id),
        Ok(_) => {}
        Err(e) => tracing::warn!(entity, error = %e, "an entity step names no entity id"),
    }
}

/// Adds to `commit` the record of each of `targets` that has none (see
/// [`entities::create_if_absent`]) ahead of the turn's own record, which stays last.
/// Returns the guards to hold until the commit is durable.
///
/// # Errors
///
/// [`Error::Store`] if a record cannot be read.
pub(in crate::runtime) async fn create_targets<'e>(
    engine: &'e Engine,
    targets: &[EntityId],
    commit: &mut Commit,
) -> Result<Vec<entities::Creating<'e>>, Error> {
    let mut creating = Vec::new();
    let own = commit.instances.pop();
    for id in targets {
        if let Some(guard) = entities::create_if_absent(engine, id, commit, false).await? {
            creating.push(guard);
        }
    }
    commit.instances.extend(own);
    Ok(creating)
}

/// When `instance` ends without its code running (a client terminates it, or the
/// runtime fails it for want of its orchestrator): unlocks every entity of each lock
/// request its stored history does not record released, granted or still pending, in
/// the commit that ends it. Their records exist: the lock request made them.
///
/// # Errors
///
/// [`Error::Store`] if the history cannot be read.
pub(in crate::runtime) fn release_on_end(
    engine: &Engine,
    instance: &str,
    record: &InstanceRecord,
    commit: &mut Commit,
    outbox: &mut Outbox,
) -> Result<(), Error> {
    if record.history_len == 0 {
        return Ok(());
    }
    let history = engine.store().history(instance)?;
    let run = Run::of(record);
    let mut targets = Vec::new();
    for (lock_seq, entities) in locks::unreleased(&history) {
        let command = Command::UnlockEntities { lock_seq, entities };
        send(engine, instance, run, command, commit, outbox, &mut targets);
    }
    Ok(())
}
