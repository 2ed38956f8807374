//! [`Locks`]: the critical sections of one execution, rebuilt from the history on replay.
//!
//! Each lock request the code makes (`ctx.lock(..)`, a step) opens a section over its
//! entities, until the code releases it (`CriticalSection::release` or its drop) or the
//! orchestration ends. A release is recorded in the history (`EntityLocksReleased`) once:
//! the one the history holds is applied before the code that made it is replayed, so
//! what the code does and what was recorded are kept apart. The rules of a section
//! (what it may call, signal, lock or start) are checked against what the code has done,
//! never against what the history will say later in the turn.

use std::collections::BTreeMap;

use durable_store::Event;

/// One lock request.
#[derive(Debug)]
struct LockSet {
    /// The entities' instance ids, in lock order.
    entities: Vec<String>,
    /// Whether the code released it.
    released: bool,
    /// Whether the history holds its release (recorded earlier, or this turn).
    release_recorded: bool,
}

/// The lock requests of one execution, by step.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    by_seq: BTreeMap<u64, LockSet>,
}

impl Locks {
    /// Notes the lock request of step `seq` on `entities` (from the history, or issued
    /// by the code; the first counts).
    pub(crate) fn requested(&mut self, seq: u64, entities: &[String]) {
        self.by_seq.entry(seq).or_insert_with(|| LockSet {
            entities: entities.to_vec(),
            released: false,
            release_recorded: false,
        });
    }

    /// Notes that the history holds the release of the lock request of step `seq`.
    pub(crate) fn release_recorded(&mut self, seq: u64) {
        if let Some(set) = self.by_seq.get_mut(&seq) {
            set.release_recorded = true;
        }
    }

    /// The section the code is in: the lock request it issued (a step before
    /// `next_seq`) and has not released, with its entities.
    pub(crate) fn open(&self, next_seq: u64) -> Option<(u64, &[String])> {
        self.by_seq
            .range(..next_seq)
            .find(|(_, set)| !set.released)
            .map(|(seq, set)| (*seq, set.entities.as_slice()))
    }

    /// The code releases the lock request of step `seq`: its entities, if the release is
    /// to be recorded now (the history does not hold it yet).
    pub(crate) fn release(&mut self, seq: u64) -> Option<Vec<String>> {
        let set = self.by_seq.get_mut(&seq)?;
        set.released = true;
        if set.release_recorded {
            return None;
        }
        set.release_recorded = true;
        Some(set.entities.clone())
    }

    /// The orchestration ends: every lock request whose release the history does not
    /// hold, granted or not, with its entities, now released.
    pub(crate) fn release_all(&mut self) -> Vec<(u64, Vec<String>)> {
        self.by_seq
            .iter_mut()
            .filter(|(_, set)| !set.release_recorded)
            .map(|(seq, set)| {
                set.released = true;
                set.release_recorded = true;
                (*seq, set.entities.clone())
            })
            .collect()
    }
}

/// The lock requests of `history` it does not record released, by step, with their
/// entities: what an orchestration ended from outside its code (terminated) still holds
/// or waits for.
pub(crate) fn unreleased(history: &[Event]) -> Vec<(u64, Vec<String>)> {
    let mut locks = Locks::default();
    for event in history {
        match event {
            Event::EntityLockRequested { seq, entities, .. } => locks.requested(*seq, entities),
            Event::EntityLocksReleased { lock_seq } => locks.release_recorded(*lock_seq),
            _ => {}
        }
    }
    locks.release_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_section_is_open_from_its_request_until_the_code_releases_it() {
        let mut locks = Locks::default();
        locks.requested(2, &ids(&["@A@a", "@A@b"]));
        assert_eq!(locks.open(2), None, "not issued by the code yet");
        assert_eq!(locks.open(3).map(|(seq, _)| seq), Some(2));
        // The history's release, applied ahead of the code, does not close it.
        locks.release_recorded(2);
        assert!(locks.open(3).is_some());
        assert_eq!(locks.release(2), None, "recorded already");
        assert_eq!(locks.open(3), None);
        assert!(locks.release_all().is_empty());
    }

    #[test]
    fn the_end_releases_what_is_not_recorded_released() {
        let mut locks = Locks::default();
        locks.requested(0, &ids(&["@A@a"]));
        locks.requested(4, &ids(&["@A@b"]));
        assert_eq!(locks.release(0), Some(ids(&["@A@a"])));
        assert_eq!(locks.release(0), None, "once");
        assert_eq!(locks.release_all(), vec![(4, ids(&["@A@b"]))]);
        assert!(locks.release_all().is_empty());
    }
}
