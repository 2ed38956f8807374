//! Dead-letter: an instance that crashes its worker every time it runs (the process dies
//! in its turn or in its activity: an `abort`, a segfault in a native library, the OOM
//! killer) is parked after a number of recoveries, instead of taking the fleet down at
//! every restart (DBOS's `max_recovery_attempts` and its `MAX_RECOVERY_ATTEMPTS_EXCEEDED`
//! status).
//!
//! The runtime cannot see a crash; it sees, at a recovery ([`super::recovery`]), which
//! instances had work in flight when the worker died. Each such instance has a marker in
//! the store (a progress record under [`marker_key`]) counting the recoveries its work
//! went through without reaching a turn's commit, and, of those, the crashes that came
//! while it ran alone:
//!
//! - at a recovery, an instance with work in flight and a count of 0 gets a count of 1,
//!   in the recovery's commit, and runs as usual, beside the others, under watch;
//! - one whose count is already 1 or more is a suspect: suspects run one at a time, each
//!   once nothing else is under watch (at most [`SUSPECT_WAIT`]), counted one more just
//!   before its work is handed out, and one more *alone* when nothing else under watch
//!   ran: the crash that follows is its own, not that of an instance beside it. A suspect
//!   that must run beside the last one (still running after [`SUSPECT_WAIT`]) names it in
//!   its marker (`beside`), and the next recovery takes that one's alone count back;
//! - one whose alone count has reached its limit is parked: dead-lettered
//!   ([`Status::DeadLettered`](durable_store::Status::DeadLettered)), its activity
//!   tasks kept in the store and not run. An innocent instance in flight beside a poison
//!   one is never counted alone for the poison's crash, so it is never parked for it;
//! - `durable resume` (or the dashboard's, or [`Client::resume`](crate::Client::resume))
//!   lets it go on with a new count: its tasks run at once on a runtime that holds it
//!   ([`Watch::take_parked`]), else at the next start;
//! - the first turn an instance under watch commits clears its marker, in that commit (a
//!   stall's commit too; a failure's or a request's ends its watch as well);
//!   the turn that ends it (or a terminate, or a purge) removes it;
//! - suspects whose work ran beside another's at the last crash run first
//!   ([`in_running_order`]), so a long one found first does not keep a poison from ever
//!   running alone.
//!
//! The normal path pays nothing but one progress removal when an instance ends: no marker
//! is written unless a recovery found work in flight or the start gave a limit, and a
//! turn looks at an in-memory set only while some instance is under watch.
//! The limit is the runtime's ([`RuntimeBuilder::max_recoveries`](crate::RuntimeBuilder::max_recoveries),
//! off by default) unless the start gave one
//! ([`StartOptions::max_recoveries`](crate::StartOptions::max_recoveries)), which the
//! marker keeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_store::{Commit, Incarnation, InstanceRecord, WorkId, WorkItem};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::engine::Engine;
use super::inbox::Outgoing;
use super::recovery::run_tasks;

/// How long a suspect waits for the instances under watch to reach a commit before it
/// runs beside them, not alone (a suspect waiting on a long activity must not hold the
/// others up for good).
pub(in crate::runtime) const SUSPECT_WAIT: Duration = Duration::from_secs(30);

/// The marker of one run of an instance, encoded with postcard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// Recoveries its work went through without a turn committed since.
    pub(crate) count: u32,
    /// The limit its start gave, if any.
    pub(crate) limit: Option<u32>,
    /// Parked (dead-lettered).
    pub(crate) parked: bool,
    /// Of `count`, the crashes that came while it ran alone: what the limit is held to.
    pub(crate) alone: u32,
    /// The suspect that ran alone before this one and was still running when this one's
    /// work was handed out: the next recovery takes back that one's last alone count.
    pub(crate) beside: Option<String>,
}

/// A marker as written before it counted crashes alone (fields appended since decode
/// from this layout).
#[derive(Deserialize)]
struct MarkerV1 {
    count: u32,
    limit: Option<u32>,
    parked: bool,
}

impl Marker {
    /// The marker as stored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a marker encodes")
    }

    /// A stored marker; a record that does not decode counts as none. One written before
    /// the alone count had its crashes counted alone.
    pub(crate) fn decode(bytes: &[u8]) -> Self {
        if let Ok(marker) = postcard::from_bytes(bytes) {
            return marker;
        }
        postcard::from_bytes::<MarkerV1>(bytes).map_or_else(
            |_| Marker::default(),
            |old| Marker {
                count: old.count,
                limit: old.limit,
                parked: old.parked,
                alone: old.count,
                beside: None,
            },
        )
    }

    /// The marker once a turn committed, or a client resumed it: the counts back to 0
    /// (`None`, removed, when there is no limit of the start's to keep).
    pub(crate) fn cleared(&self) -> Option<Vec<u8>> {
        self.limit.map(|limit| {
            Marker {
                limit: Some(limit),
                ..Marker::default()
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

/// Adds to `commit` the removal of the marker of `instance`, whose run `record` ends
/// (or is purged) in it.
pub(crate) fn remove_marker(instance: &str, record: &InstanceRecord, commit: &mut Commit) {
    let key = marker_key(instance, record.incarnation);
    commit.progress.retain(|(other, _)| *other != key);
    commit.progress.push((key, None));
}

/// The instances under watch, the runtime's limit, and the tasks of parked instances.
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
    /// The activity tasks of the instances parked here, kept in the store: run when a
    /// resume reaches this runtime.
    parked: Mutex<HashMap<String, Vec<(WorkId, WorkItem)>>>,
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

    /// Adds to a turn's `commit` of `instance`, whose record is now `record`, what
    /// becomes of its marker: removed if the turn ends it, else cleared if it is under
    /// watch.
    pub(in crate::runtime) fn clear_in(
        &self,
        instance: &str,
        record: &InstanceRecord,
        commit: &mut Commit,
    ) {
        if record.status.is_terminal() {
            remove_marker(instance, record, commit);
            return;
        }
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

    /// Whether `instance` is under watch.
    fn watches(&self, instance: &str) -> bool {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.contains_key(instance)
    }

    /// Waits until nothing is under watch, at most `limit`, or until `stop` says to
    /// (looked at every 100 ms: a shutdown does not wait for a suspect). Returns whether
    /// nothing is.
    async fn until_none(&self, limit: Duration, stop: impl Fn() -> bool) -> bool {
        const LOOK: Duration = Duration::from_millis(100);
        let end = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.cleared.notified();
            if !self.any.load(Ordering::SeqCst) {
                return true;
            }
            if tokio::time::Instant::now() >= end || stop() {
                return false;
            }
            let _ = tokio::time::timeout(LOOK, notified).await;
        }
    }

    /// Keeps the activity `tasks` of `instance`, parked here.
    pub(in crate::runtime) fn park(&self, instance: &str, tasks: Vec<(WorkId, WorkItem)>) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        parked.insert(instance.to_string(), tasks);
    }

    /// The activity tasks parked here with `instance`, which a resume lets run (none if
    /// it was not parked here).
    pub(in crate::runtime) fn take_parked(&self, instance: &str) -> Vec<(WorkId, WorkItem)> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        parked.remove(instance).unwrap_or_default()
    }
}

/// Why an instance was parked, as its dead-lettered status says.
pub(in crate::runtime) fn parked_reason(marker: &Marker, limit: u32) -> String {
    format!(
        "its work was in flight at {} crashes of its worker in a row, {} of them while it \
         ran alone (max_recoveries {limit}); resume it to run its work again",
        marker.count, marker.alone
    )
}

/// An instance whose work was in flight at more than one crash in a row: its work, held
/// back to run one suspect at a time.
pub(in crate::runtime) struct Suspect {
    pub(in crate::runtime) id: String,
    pub(in crate::runtime) key: String,
    pub(in crate::runtime) marker: Marker,
    pub(in crate::runtime) messages: Vec<Outgoing>,
    pub(in crate::runtime) tasks: Vec<(WorkId, WorkItem)>,
}

/// The suspects in the order they run: those whose work ran beside another suspect's at
/// the last crash (`ran_beside`) first, else as found. A suspect that sorts before a
/// poison and whose work outlasts [`SUSPECT_WAIT`] would otherwise run alone at every
/// recovery and the poison beside it, never alone, never parked.
pub(in crate::runtime) fn in_running_order(mut suspects: Vec<(bool, Suspect)>) -> Vec<Suspect> {
    suspects.sort_by_key(|(ran_beside, _)| !ran_beside);
    suspects.into_iter().map(|(_, suspect)| suspect).collect()
}

/// Runs the suspects' work one instance at a time, each once nothing else is under watch
/// (or after [`SUSPECT_WAIT`]), counted once more, and once more alone if nothing was,
/// just before it runs.
pub(in crate::runtime) async fn run_suspects(engine: Arc<Engine>, suspects: Vec<Suspect>) {
    // The last suspect that ran alone: those that run beside it while it runs name it.
    let mut last_alone: Option<String> = None;
    for Suspect {
        id,
        key,
        mut marker,
        messages,
        tasks,
    } in suspects
    {
        if engine.takes_no_work() {
            return;
        }
        let watch = engine.recovery_watch();
        let alone = watch
            .until_none(SUSPECT_WAIT, || engine.takes_no_work())
            .await;
        if engine.takes_no_work() {
            return;
        }
        marker.count += 1;
        if alone {
            marker.alone += 1;
            marker.beside = None;
        } else {
            // Every one that runs beside it names it: any of them may outlive the others.
            marker.beside = last_alone.clone().filter(|other| watch.watches(other));
        }
        let mut commit = Commit {
            progress: vec![(key.clone(), Some(marker.encode()))],
            ..Commit::default()
        };
        // Their attempt was counted when they were sorted: written now.
        commit.enqueued.clone_from(&tasks);
        if let Err(e) = engine.commit(commit).await {
            tracing::warn!(instance = id, error = %e, "a suspect's recovery count not written; its work waits for the next start");
            continue;
        }
        tracing::warn!(
            instance = id,
            recoveries = marker.count,
            alone,
            "running the work of an instance in flight at the last crashes"
        );
        watch.watch(&id, key, marker);
        engine.deliver_all(messages);
        run_tasks(&engine, tasks);
        if alone {
            last_alone = Some(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_clears_to_its_limit() {
        let marker = Marker {
            count: 2,
            limit: Some(3),
            alone: 1,
            beside: Some("other".into()),
            ..Marker::default()
        };
        assert_eq!(Marker::decode(&marker.encode()), marker);
        let cleared = Marker::decode(&marker.cleared().unwrap());
        assert_eq!(cleared.count, 0);
        assert_eq!(cleared.alone, 0);
        assert_eq!(cleared.beside, None);
        assert_eq!(cleared.limit, Some(3));
        assert_eq!(Marker::default().cleared(), None);
    }

    #[test]
    fn a_marker_of_the_first_layout_decodes_its_crashes_as_alone() {
        #[derive(Serialize)]
        struct V1 {
            count: u32,
            limit: Option<u32>,
            parked: bool,
        }
        let old = postcard::to_allocvec(&V1 {
            count: 2,
            limit: Some(4),
            parked: true,
        })
        .unwrap();
        let marker = Marker::decode(&old);
        assert_eq!((marker.count, marker.alone), (2, 2));
        assert_eq!(marker.limit, Some(4));
        assert!(marker.parked);
    }

    /// A suspect that ran beside another at the last crash runs first, alone, this time
    /// (the order found, by id, put a long innocent first at every recovery).
    #[test]
    fn a_suspect_that_ran_beside_another_runs_first() {
        let suspect = |id: &str| Suspect {
            id: id.into(),
            key: marker_key(id, 1),
            marker: Marker::default(),
            messages: Vec::new(),
            tasks: Vec::new(),
        };
        let found = vec![
            (false, suspect("a-long")),
            (true, suspect("b")),
            (false, suspect("c")),
            (true, suspect("d-poison")),
        ];
        let order: Vec<String> = in_running_order(found).into_iter().map(|s| s.id).collect();
        assert_eq!(order, ["b", "d-poison", "a-long", "c"]);
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
