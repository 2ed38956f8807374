//! The lease contract on [`FjallStore`]: claims, work id reservations and the history
//! fence. One process holds the store, so the lease table lives in its memory
//! ([`crate::lease::local`]); what it reads from disk is what a claim may take.
//!
//! The history fence reads the length of a history once, with a reverse seek on its
//! prefix, then keeps it in memory with the instance's index entry (`Inner::live`) while
//! the instance is live: a turn's append costs a map lookup, not a read.

use super::{FjallStore, decode, lock};
use crate::error::StoreError;
use crate::hash::FnvMap;
use crate::keys;
use crate::lease::local::ClaimReads;
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::InstanceFilter;
use crate::record::{Commit, InstanceRecord, StatusKind, WorkId, WorkItem};
use crate::store::Store;

impl FjallStore {
    /// The body of [`Store::claim`]: reads only what no worker holds (see
    /// [`crate::lease::local`]).
    pub(super) fn claim_work(
        &self,
        worker: WorkerId,
        filter: &ClaimFilter,
    ) -> Result<Claim, StoreError> {
        lock(&self.inner.leases).claim(worker, filter, self)
    }

    /// The body of [`Store::reserve_work_ids`]: above the last reservation, the highest id
    /// ever written (kept in memory), and, the first time, the highest id queued (one
    /// reverse seek, for a store migrated from format 2, which does not know the highest).
    pub(super) fn reserve(&self, count: u64) -> Result<WorkId, StoreError> {
        let mut next = lock(&self.inner.next_work_id);
        let reserved = match *next {
            Some(next) => next,
            None => match self.inner.work.last_key_value() {
                None => 0,
                Some(guard) => {
                    let key = guard.key().map_err(self.io("reading"))?;
                    work_id(&key)?.saturating_add(1)
                }
            },
        };
        let written = lock(&self.inner.work_ids)
            .highest()
            .map_or(0, |highest| highest.saturating_add(1));
        let first = reserved.max(written);
        *next = Some(first.saturating_add(count));
        Ok(first)
    }

    /// Checks that every history append of `commits` starts where its history ends
    /// (after the removals and appends of the commits before it); returns the length of
    /// each history the call appends to or removes, after it.
    ///
    /// # Errors
    ///
    /// [`StoreError::HistoryConflict`] for the first append that does not;
    /// [`StoreError::Io`] or [`StoreError::Decode`] if a length cannot be read.
    pub(super) fn check_appends<'a>(
        &self,
        commits: &'a [Commit],
    ) -> Result<FnvMap<&'a str, u64>, StoreError> {
        let touched: usize = (commits.iter())
            .map(|commit| commit.history.len() + commit.histories_removed.len())
            .sum();
        let mut lengths = FnvMap::with_capacity_and_hasher(touched, Default::default());
        if touched == 0 {
            return Ok(lengths);
        }
        let live = lock(&self.inner.live);
        for commit in commits {
            for (id, _) in &commit.histories_removed {
                lengths.insert(id, 0);
            }
            for append in &commit.history {
                let id = append.instance.as_str();
                let kept = || live.get(id).and_then(|kept| kept.history);
                let stored = match lengths.get(id).copied().or_else(kept) {
                    Some(length) => length,
                    None => self.stored_history_len(id)?,
                };
                if u64::from(append.first) != stored {
                    return Err(StoreError::HistoryConflict {
                        instance: id.to_owned(),
                        first: append.first,
                        stored: u32::try_from(stored).unwrap_or(u32::MAX),
                    });
                }
                lengths.insert(id, stored + append.events.len() as u64);
            }
        }
        Ok(lengths)
    }

    /// The number of events stored in the history of `id`: one past the index of its last
    /// key, found by a reverse seek on its prefix.
    fn stored_history_len(&self, id: &str) -> Result<u64, StoreError> {
        let prefix = keys::history_prefix(id);
        let Some(guard) = self.inner.history.prefix(&prefix).next_back() else {
            return Ok(0);
        };
        let key = guard.key().map_err(self.io("reading"))?;
        let index = super::event_index(id, prefix.len(), &key)?;
        Ok(u64::from(index) + 1)
    }
}

/// The work id a key of the `work` keyspace holds.
pub(super) fn work_id(key: &[u8]) -> Result<WorkId, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(WorkId::from_be_bytes)
        .map_err(|_| StoreError::Decode {
            what: format!("work key {key:?} (keyspace `work`)"),
            detail: "the key is not an 8-byte work id".to_owned(),
            source: None,
        })
}

impl ClaimReads for FjallStore {
    fn all_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        self.work_items()
    }

    fn item(&self, id: WorkId) -> Result<Option<WorkItem>, StoreError> {
        let Some(bytes) = (self.inner.work.get(id.to_be_bytes())).map_err(self.io("reading"))?
        else {
            return Ok(None);
        };
        decode(&bytes, || format!("work item {id} (keyspace `work`)")).map(Some)
    }

    fn stalled(&self) -> Result<Vec<String>, StoreError> {
        let stalled = InstanceFilter {
            statuses: vec![StatusKind::Stalled],
            ..InstanceFilter::default()
        };
        let found = self.scan(&stalled, None, usize::MAX)?;
        Ok(found.into_iter().map(|(cursor, _)| cursor.id).collect())
    }

    fn running(&self, orchestrator: &str) -> Result<Vec<String>, StoreError> {
        let running = InstanceFilter {
            statuses: (StatusKind::ALL.into_iter())
                .filter(|kind| crate::lease::counts_as_running(*kind))
                .collect(),
            orchestrator: Some(orchestrator.to_owned()),
            ..InstanceFilter::default()
        };
        let found = self.scan(&running, None, usize::MAX)?;
        Ok(found.into_iter().map(|(cursor, _)| cursor.id).collect())
    }

    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.instance(id)
    }
}
