//! The pure part of an entity turn: the messages waiting for the entity, in arrival order,
//! and its record's state and lock owner in; what runs, what it leaves (state, lock
//! owner), what it sends, and what waits, out. No I/O: the turn ([`super::turn()`]) commits
//! what comes out in one commit.

use durable_store::{Event, Failure, ParentLink};

use super::DELETE_OPERATION;
use crate::entity::{EntityError, EntityId, Signal};
use crate::payload;
use crate::registry::EntityDispatch;
use crate::runtime::inbox::Delivery;

/// What an entity's turn runs on.
pub(super) struct Entity<'a> {
    pub(super) id: &'a EntityId,
    /// `id` as an instance id.
    pub(super) instance: &'a str,
    pub(super) dispatch: EntityDispatch,
    /// The largest state, output or failure the entity may store or send, in bytes.
    pub(super) max_payload: usize,
}

/// What the turn sends, to commit with the state.
pub(super) enum Sent {
    /// A signal an operation sent to an entity.
    Signal(Signal),
    /// An answer to a call, or a lock grant: a message to an orchestration's run.
    ToOrchestration {
        /// The orchestration's run (and the step the message is about).
        to: ParentLink,
        event: Event,
    },
    /// A lock request passed on to the next entity of its set.
    Forward { entity: EntityId, event: Event },
}

/// What a turn comes to.
pub(super) struct Batch {
    /// The state after the last operation (`None`: the entity has none, as when made or
    /// deleted).
    pub(super) state: Option<Vec<u8>>,
    /// Who holds the entity's lock after the turn.
    pub(super) lock: Option<ParentLink>,
    /// The messages the turn took: acknowledged in its commit.
    pub(super) consumed: Vec<Delivery>,
    /// The messages that wait (for the lock to be released, for a lock request to
    /// arrive), in arrival order: not acknowledged, offered again at the next turn.
    pub(super) held: Vec<Delivery>,
    /// What it sends, in the order it was sent.
    pub(super) sent: Vec<Sent>,
}

/// The stored state does not decode: nothing of the turn is to be committed.
pub(super) struct UndecodableState;

/// Runs `pending` (the messages the entity held back at its last turn, then those that
/// came since, in arrival order) on `state` under lock owner `lock`.
///
/// While unlocked, the messages run in arrival order; an `EntityUnlock` (for a lock
/// request that has not come yet) waits, without holding up what comes after it. While
/// locked by an owner, only its calls (and its unlock) run, wherever they are in the
/// queue; everything else waits, and runs in arrival order once it is unlocked.
///
/// # Errors
///
/// [`UndecodableState`] if an operation finds the stored state undecodable.
pub(super) fn run(
    entity: &Entity<'_>,
    state: Option<Vec<u8>>,
    lock: Option<ParentLink>,
    pending: Vec<Delivery>,
) -> Result<Batch, UndecodableState> {
    let mut batch = Batch {
        state,
        lock,
        consumed: Vec::with_capacity(pending.len()),
        held: Vec::new(),
        sent: Vec::new(),
    };
    let mut slots: Vec<Option<Delivery>> = pending.into_iter().map(Some).collect();
    // Where the queue is read again from once the entity is unlocked: just after the
    // message that locked it (every one before that ran, or is an unlock that waits for
    // its lock request).
    let mut resume = 0;
    let mut at = 0;
    while at < slots.len() {
        let runs = slots[at].as_ref().is_some_and(|d| match &batch.lock {
            None => !matches!(d.event, Event::EntityUnlock { .. }),
            Some(owner) => runs_while_locked(&d.event, owner),
        });
        if !runs {
            at += 1;
            continue;
        }
        let delivery = slots[at].take().expect("a message that runs is there");
        let locked = batch.lock.is_some();
        step(entity, &mut batch, &delivery.event, &mut slots[..at])?;
        batch.consumed.push(delivery);
        match (locked, batch.lock.is_some()) {
            (false, true) => {
                at += 1;
                resume = at;
            }
            (true, false) => at = resume,
            _ => at += 1,
        }
    }
    batch.held = slots.into_iter().flatten().collect();
    Ok(batch)
}

/// Whether `event` runs on an entity locked by `owner`: a call of its run, its unlock,
/// or its lock request again.
fn runs_while_locked(event: &Event, owner: &ParentLink) -> bool {
    match event {
        Event::EntityCall { caller, .. } => same_run(caller, owner),
        Event::EntityUnlock { owner: o } | Event::EntityLock { owner: o, .. } => o == owner,
        _ => false,
    }
}

/// Whether `a` and `b` name the same run of an orchestration (their steps aside).
fn same_run(a: &ParentLink, b: &ParentLink) -> bool {
    a.instance == b.instance && a.incarnation == b.incarnation && a.generation == b.generation
}

/// Runs one message; `earlier` are the messages that came before it and wait (a lock
/// request takes its early unlock from them).
fn step(
    entity: &Entity<'_>,
    batch: &mut Batch,
    event: &Event,
    earlier: &mut [Option<Delivery>],
) -> Result<(), UndecodableState> {
    match event {
        Event::EntityOperation {
            operation, input, ..
        } => {
            if operation == DELETE_OPERATION {
                batch.state = None;
                return Ok(());
            }
            if let Err(error) = operation_on(entity, batch, operation, input, false)? {
                tracing::warn!(entity = %entity.id, error = %error.message, "entity operation failed; its effects dropped");
            }
        }
        Event::EntityCall {
            operation,
            input,
            caller,
        } => {
            let event = match operation_on(entity, batch, operation, input, true)? {
                Ok(output) => Event::EntityCompleted {
                    seq: caller.seq,
                    output,
                },
                Err(failure) => Event::EntityFailed {
                    seq: caller.seq,
                    failure: payload::fit_failure(failure, entity.max_payload),
                },
            };
            batch.sent.push(Sent::ToOrchestration {
                to: caller.clone(),
                event,
            });
        }
        Event::EntityLock {
            owner,
            entities,
            position,
        } => lock(entity, batch, owner, entities, *position, earlier),
        Event::EntityUnlock { .. } => batch.lock = None,
        _ => {
            tracing::warn!(entity = %entity.id, "a message that is not for an entity, dropped");
        }
    }
    Ok(())
}

/// Runs `operation` on the batch's state: on success its state and signals join the
/// batch, and its output (JSON) comes back; on failure nothing of it does, and its
/// failure comes back (the failure a caller gets). `called`: its output goes to a caller,
/// so it must fit the payload limit too.
fn operation_on(
    entity: &Entity<'_>,
    batch: &mut Batch,
    operation: &str,
    input: &[u8],
    called: bool,
) -> Result<Result<Vec<u8>, Failure>, UndecodableState> {
    let done = match (entity.dispatch)(entity.id, batch.state.as_deref(), operation, input) {
        Ok(done) => done,
        Err(error @ EntityError::UndecodableState { .. }) => {
            tracing::error!(
                entity = %entity.id,
                error = %error,
                "entity turn not run: its stored state does not decode; its operations, and \
                 every message sent to it after them, wait in the store for code that reads \
                 it (add `#[serde(default)]` to fields added since), and run on the next start"
            );
            return Err(UndecodableState);
        }
        Err(error) => return Ok(Err(error.failure())),
    };
    let limit = entity.max_payload;
    let what = |which: &str| {
        format!(
            "the {which} of operation `{operation}` of entity `{}`",
            entity.id
        )
    };
    // Stored or sent, it would be refused: the operation fails, as one that returned
    // `Err` does.
    let too_large = done
        .state
        .as_ref()
        .and_then(|state| payload::check_size(|| what("state"), state, limit).err())
        .or_else(|| {
            called
                .then(|| payload::check_size(|| what("output"), &done.output, limit).err())
                .flatten()
        });
    if let Some(too_large) = too_large {
        return Ok(Err(too_large.failure()));
    }
    if let Some(state) = done.state {
        batch.state = Some(state);
    }
    batch
        .sent
        .extend(done.signals.into_iter().map(Sent::Signal));
    Ok(Ok(done.output))
}

/// Runs lock request `owner` (of `entities`, for `entities[position]`, this entity).
///
/// - An unlock of `owner` that came before it and waits among `earlier` (the owner ended
///   while its request was on its way): both are taken, the entity is not locked, and the
///   request goes on (so that no entity of the set stays locked for an orchestration that
///   ended). An unlock that came after it is the end of its section: the entity locks,
///   and runs the owner's calls that came between before that unlock.
/// - Already locked by `owner`: the request came again (a turn retried after a commit
///   reported failed but written). The commit that locked the entity for it passed it on
///   too, so it is taken and not passed on a second time.
/// - Otherwise the entity locks itself for `owner`, and passes the request on.
///
/// Passed on: to `entities[position + 1]`, or from the last, a grant to `owner`.
fn lock(
    entity: &Entity<'_>,
    batch: &mut Batch,
    owner: &ParentLink,
    entities: &[String],
    position: u32,
    earlier: &mut [Option<Delivery>],
) {
    if entities
        .get(position as usize)
        .is_none_or(|e| e != entity.instance)
    {
        tracing::error!(entity = %entity.id, owner = %owner.instance, position, ?entities, "a lock request not for this entity, dropped");
        return;
    }
    if batch.lock.as_ref() == Some(owner) {
        // Its first place in the set: the request came again. A later place (a set that
        // names it twice): it is locked already, and the request goes on.
        if entities.iter().position(|e| e == entity.instance) == Some(position as usize) {
            tracing::debug!(entity = %entity.id, owner = %owner.instance, "a lock request that came again, dropped");
            return;
        }
    } else {
        let unlocked_early = earlier.iter_mut().find(|slot| {
            matches!(slot, Some(Delivery { event: Event::EntityUnlock { owner: o }, .. }) if o == owner)
        });
        match unlocked_early {
            Some(unlock) => batch.consumed.extend(unlock.take()),
            None => batch.lock = Some(owner.clone()),
        }
    }
    let next = position as usize + 1;
    match entities.get(next) {
        None => batch.sent.push(Sent::ToOrchestration {
            to: owner.clone(),
            event: Event::EntityLockGranted { seq: owner.seq },
        }),
        Some(id) => match id.parse::<EntityId>() {
            Ok(next_entity) => batch.sent.push(Sent::Forward {
                entity: next_entity,
                event: Event::EntityLock {
                    owner: owner.clone(),
                    entities: entities.to_vec(),
                    position: next as u32,
                },
            }),
            Err(error) => {
                tracing::error!(entity = %entity.id, owner = %owner.instance, next = id, error = %error, "a lock request's next entity is not an entity id: not passed on");
            }
        },
    }
}
