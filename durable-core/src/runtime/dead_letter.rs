//! Dead-letter: an instance that crashes its worker every time it runs (the process dies
//! in its turn or in its activity: an `abort`, a segfault in a native library, the OOM
//! killer) is parked after a number of recoveries, instead of taking the fleet down at
//! every restart (DBOS's `max_recovery_attempts`).
//!
//! The runtime cannot see a crash; it sees, at a recovery ([`super::recovery`]), which
//! instances had work in flight when the worker died. Each such instance has a marker in
//! the store (a progress record under [`marker_key`]) counting the recoveries its work
//! went through without reaching a turn's commit:
//!
//! - at a recovery, an instance with work in flight and a count of 0 gets a count of 1,
//!   in the recovery's commit, and runs as usual, under watch;
//! - one whose count is already 1 or more is a suspect: suspects run one at a time, each
//!   counted one more (a commit of its marker) just before its work is handed out, so
//!   that when the worker dies again the count that grows is the one of the instance
//!   that ran, not of those that merely were in flight beside it;
//! - one whose count has reached its limit is parked: suspended, with a reason saying
//!   so, its activity tasks kept in the store and not run. `durable resume` (or the
//!   dashboard's) lets it go on: its work runs at the next restart, with a new count;
//! - the first turn an instance under watch commits clears its marker, in that commit.
//!
//! The normal path pays nothing: no marker is written unless a recovery found work in
//! flight, and a turn looks at an in-memory set only while some instance is under watch.
//! The limit is the runtime's ([`RuntimeBuilder::max_recoveries`](crate::RuntimeBuilder::max_recoveries),
//! off by default) unless the start gave one
//! ([`StartOptions::max_recoveries`](crate::StartOptions::max_recoveries)), which the
//! marker keeps.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use durable_store::{Commit, Incarnation};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// How long a suspect's work may take to reach a commit before the next suspect runs
/// anyway (a suspect waiting on a long activity must not hold the others up for good).
pub(in crate::runtime) const SUSPECT_WAIT: Duration = Duration::from_secs(30);

/// The marker of one run of an instance, encoded with postcard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// Recoveries its work went through without a turn committed since.
    pub(crate) count: u32,
    /// The limit its start gave, if any.
    pub(crate) limit: Option<u32>,
    /// Parked (suspended as dead-lettered).
    pub(crate) parked: bool,
}

impl Marker {
    /// The marker as stored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a marker encodes")
    }

    /// A stored marker; a record that does not decode counts as none.
    pub(crate) fn decode(bytes: &[u8]) -> Self {
        postcard::from_bytes(bytes).unwrap_or_default()
    }

    /// The marker once a turn committed: the count back to 0 (`None`, removed, when
    /// there is no limit of the start's to keep).
    fn cleared(&self) -> Option<Vec<u8>> {
        self.limit.map(|limit| {
            Marker {
                count: 0,
                limit: Some(limit),
                parked: false,
            }
            .encode()
        })
    }
}

/// The progress key of the marker of run `incarnation` of `instance`: apart from the
/// activities' idempotency keys (`instance/incarnation.generation/step`), which never
/// start with `~`.
pub(crate) fn marker_key(instance: &str, incarnation: Incarnation) -> String {
    format!("~recoveries/{incarnation:x}/{instance}")
}

/// The instances under watch, and the runtime's limit.
#[derive(Debug, Default)]
pub(in crate::runtime) struct Watch {
    /// The runtime's limit; 0 for none.
    default_limit: AtomicU32,
    /// Whether `watched` may hold anything: what a turn reads first.
    any: AtomicBool,
    /// The instances under watch: their marker's key and value.
    watched: Mutex<HashMap<String, (String, Marker)>>,
    /// Told when an instance's watch ends.
    cleared: Notify,
}

impl Watch {
    /// Sets the runtime's limit (`None`: off).
    pub(in crate::runtime) fn set_default_limit(&self, limit: Option<u32>) {
        let limit = limit.map_or(0, |n| n.max(1));
        self.default_limit.store(limit, Ordering::Relaxed);
    }

    /// The limit of an instance with `marker`: its start's, else the runtime's.
    pub(in crate::runtime) fn limit(&self, marker: &Marker) -> Option<u32> {
        let default = self.default_limit.load(Ordering::Relaxed);
        marker.limit.or((default > 0).then_some(default))
    }

    /// Puts `instance` under watch, its marker (under `key`) as committed.
    pub(in crate::runtime) fn watch(&self, instance: &str, key: String, marker: Marker) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.insert(instance.to_string(), (key, marker));
        self.any.store(true, Ordering::SeqCst);
    }

    /// Adds to a turn's `commit` of `instance` the clearing of its marker, if it is
    /// under watch.
    pub(in crate::runtime) fn clear_in(&self, instance: &str, commit: &mut Commit) {
        if !self.any.load(Ordering::SeqCst) {
            return;
        }
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((key, marker)) = watched.get(instance) {
            commit.progress.push((key.clone(), marker.cleared()));
        }
    }

    /// A turn of `instance` committed: its watch ends.
    pub(in crate::runtime) fn committed(&self, instance: &str) {
        if !self.any.load(Ordering::SeqCst) {
            return;
        }
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.remove(instance).is_some() {
            self.any.store(!watched.is_empty(), Ordering::SeqCst);
            self.cleared.notify_waiters();
        }
    }

    /// Waits until `instance` is no longer under watch, at most `limit`, or until `stop`
    /// says to (looked at every 100 ms: a shutdown does not wait for a suspect).
    pub(in crate::runtime) async fn until_cleared(
        &self,
        instance: &str,
        limit: Duration,
        stop: impl Fn() -> bool,
    ) {
        const LOOK: Duration = Duration::from_millis(100);
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end && !stop() {
            let notified = self.cleared.notified();
            {
                let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                if !watched.contains_key(instance) {
                    return;
                }
            }
            let _ = tokio::time::timeout(LOOK, notified).await;
        }
    }
}

/// Why an instance was parked, as its suspended status says.
pub(in crate::runtime) fn parked_reason(count: u32, limit: u32) -> String {
    format!(
        "dead-lettered: its work was in flight at {count} crashes of its worker in a row \
         (max_recoveries {limit}); resume it to run its work again at the next restart"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_clears_to_its_limit() {
        let marker = Marker {
            count: 2,
            limit: Some(3),
            parked: false,
        };
        assert_eq!(Marker::decode(&marker.encode()), marker);
        let cleared = Marker::decode(&marker.cleared().unwrap());
        assert_eq!(cleared.count, 0);
        assert_eq!(cleared.limit, Some(3));
        assert_eq!(Marker::default().cleared(), None);
    }

    #[test]
    fn the_start_limit_wins_over_the_runtime_one() {
        let watch = Watch::default();
        assert_eq!(watch.limit(&Marker::default()), None);
        watch.set_default_limit(Some(5));
        assert_eq!(watch.limit(&Marker::default()), Some(5));
        let marker = Marker {
            limit: Some(2),
            ..Marker::default()
        };
        assert_eq!(watch.limit(&marker), Some(2));
    }
}
