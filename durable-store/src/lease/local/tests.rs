//! The bookkeeping of [`Leases`]: what a claim reads, as the table learns what is unheld.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use super::{ClaimReads, Leases};
use crate::error::StoreError;
use crate::lease::{ClaimFilter, CommitLease, Holding, WorkerId};
use crate::record::{
    Commit, Event, Failure, FailureKind, InstanceRecord, Status, StatusKind, WorkId, WorkItem,
};

/// A store's contents, counting what claims read.
#[derive(Default)]
struct Fake {
    items: BTreeMap<WorkId, WorkItem>,
    records: BTreeMap<String, InstanceRecord>,
    /// Reads of the whole queue, of single items, of the stalled list, of records.
    reads: Cell<[usize; 4]>,
}

impl Fake {
    fn count(&self, which: usize) {
        let mut reads = self.reads.get();
        reads[which] += 1;
        self.reads.set(reads);
    }

    /// The reads since the last call.
    fn take_reads(&self) -> [usize; 4] {
        self.reads.take()
    }

    /// Applies `commit` as a store would: checked, written, recorded.
    fn commit(&mut self, leases: &mut Leases, commit: Commit) -> Result<(), StoreError> {
        let commits = [commit];
        leases.check(&commits, |id| {
            (self.records.get(id)).is_none_or(|record| record.status.is_terminal())
        })?;
        let [commit] = &commits;
        for id in &commit.dequeued {
            self.items.remove(id);
        }
        self.items.extend(commit.enqueued.iter().cloned());
        for (id, record) in &commit.instances {
            self.records.insert(id.clone(), record.clone());
        }
        leases.written(&commits);
        Ok(())
    }
}

impl ClaimReads for Fake {
    fn all_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        self.count(0);
        Ok(self
            .items
            .iter()
            .map(|(id, item)| (*id, item.clone()))
            .collect())
    }

    fn item(&self, id: WorkId) -> Result<Option<WorkItem>, StoreError> {
        self.count(1);
        Ok(self.items.get(&id).cloned())
    }

    fn stalled(&self) -> Result<Vec<String>, StoreError> {
        self.count(2);
        Ok((self.records.iter())
            .filter(|(_, record)| record.status.kind() == StatusKind::Stalled)
            .map(|(id, _)| id.clone())
            .collect())
    }

    fn running(&self, orchestrator: &str) -> Result<Vec<String>, StoreError> {
        Ok((self.records.iter())
            .filter(|(_, record)| {
                record.orchestrator == orchestrator
                    && crate::lease::counts_as_running(record.status.kind())
            })
            .map(|(id, _)| id.clone())
            .collect())
    }

    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.count(3);
        Ok(self.records.get(id).cloned())
    }
}

fn record(status: Status) -> InstanceRecord {
    let mut record = InstanceRecord::pending("flow".into(), 1, vec![], 0, 1, None);
    record.status = status;
    record
}

fn stalled() -> Status {
    Status::Stalled {
        failure: Failure {
            kind: FailureKind::Panicked,
            message: "no code".into(),
        },
    }
}

fn message(instance: &str) -> WorkItem {
    WorkItem::Message {
        instance: instance.into(),
        incarnation: 1,
        generation: None,
        event: Event::ResumeRequested,
    }
}

fn lease(worker: WorkerId, unclaimed: &[WorkId]) -> Option<CommitLease> {
    Some(CommitLease {
        worker,
        unclaimed: unclaimed.to_vec(),
        released: Vec::new(),
    })
}

const LONG: Duration = Duration::from_secs(60);

/// Three live instances with a message each, and a stalled one, as a store holds them
/// at open.
fn opened() -> (Fake, Leases) {
    let mut fake = Fake::default();
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        fake.records.insert(id.into(), record(Status::Running));
        fake.items.insert(n as WorkId, message(id));
    }
    fake.records.insert("s".into(), record(stalled()));
    (fake, Leases::default())
}

#[test]
fn a_claim_with_nothing_unheld_reads_nothing() {
    let (fake, mut leases) = opened();
    let (w1, w2) = (leases.join(LONG), leases.join(LONG));
    let all = ClaimFilter::default();
    let claim = leases.claim(w1, &all, &fake).unwrap();
    assert_eq!(claim.items.len(), 3);
    assert_eq!(claim.instances.len(), 4, "a, b, c and the stalled s");
    assert_eq!(
        fake.take_reads()[..3],
        [1, 0, 1],
        "the queue and the stalled, once"
    );
    for worker in [w1, w2, w2] {
        assert!(leases.claim(worker, &all, &fake).unwrap().is_empty());
        assert_eq!(fake.take_reads(), [0; 4], "worker {worker}");
    }
}

#[test]
fn a_claim_reads_only_the_items_left_unheld() {
    let (mut fake, mut leases) = opened();
    let (w1, w2) = (leases.join(LONG), leases.join(LONG));
    let all = ClaimFilter::default();
    leases.claim(w1, &all, &fake).unwrap();
    fake.take_reads();
    // A turn of `a` keeps a message to itself and leaves one to `d`, which no one holds;
    // a commit without a lease leaves one to `b`, which w1 holds.
    fake.records.insert("d".into(), record(Status::Running));
    let turn = Commit {
        dequeued: vec![0],
        enqueued: vec![(10, message("a")), (11, message("d"))],
        lease: lease(w1, &[11]),
        ..Commit::default()
    };
    fake.commit(&mut leases, turn).unwrap();
    let tool = Commit {
        enqueued: vec![(12, message("b"))],
        ..Commit::default()
    };
    fake.commit(&mut leases, tool).unwrap();
    let claim = leases.claim(w2, &all, &fake).unwrap();
    assert_eq!(
        claim.items.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [11]
    );
    assert_eq!(claim.instances[0].holding, Holding::Claimed);
    assert_eq!(
        fake.take_reads()[..3],
        [0, 2, 0],
        "items 11 and 12, nothing else"
    );
    let claim = leases.claim(w1, &all, &fake).unwrap();
    assert_eq!(
        claim.items.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [12]
    );
    assert_eq!(claim.instances[0].holding, Holding::Held);
    assert_eq!(fake.take_reads()[..3], [0, 1, 0], "item 12");
    assert!(leases.claim(w2, &all, &fake).unwrap().is_empty());
    assert_eq!(fake.take_reads(), [0; 4]);
}

#[test]
fn a_lapsed_or_departed_worker_s_holdings_are_claimed_again() {
    let (fake, mut leases) = opened();
    let short = leases.join(Duration::from_millis(20));
    let (w2, w3) = (leases.join(LONG), leases.join(LONG));
    let all = ClaimFilter::default();
    assert_eq!(leases.claim(short, &all, &fake).unwrap().instances.len(), 4);
    std::thread::sleep(Duration::from_millis(40));
    fake.take_reads();
    let claim = leases.claim(w2, &all, &fake).unwrap();
    assert_eq!(claim.items.len(), 3, "its three messages");
    assert_eq!(
        claim.instances.len(),
        4,
        "its instances, the stalled one with them"
    );
    assert_eq!(
        fake.take_reads()[..3],
        [0, 3, 1],
        "its items, and the stalled again"
    );
    assert!(leases.renew(short, LONG).is_err());
    leases.leave(w2);
    let claim = leases.claim(w3, &all, &fake).unwrap();
    assert_eq!((claim.items.len(), claim.instances.len()), (3, 4));
    assert!(leases.workers.len() == 1 && leases.items.values().all(|w| *w == w3));
}

#[test]
fn stalled_instances_are_kept_track_of_without_a_second_read() {
    let (mut fake, mut leases) = opened();
    let (w1, w2) = (leases.join(LONG), leases.join(LONG));
    let only_other = ClaimFilter::default().orchestrators(vec!["other".into()]);
    // The first claim reads the stalled `s`, but its filter does not take it.
    let claim = leases.claim(w1, &only_other, &fake).unwrap();
    assert!(claim.is_empty());
    assert_eq!(fake.take_reads()[2], 1);
    // A tool stalls `t`; a worker stalls `u`, which it holds.
    let tool = Commit {
        instances: vec![("t".into(), record(stalled()))],
        ..Commit::default()
    };
    fake.commit(&mut leases, tool).unwrap();
    let turn = Commit {
        instances: vec![("u".into(), record(stalled()))],
        lease: lease(w1, &[]),
        ..Commit::default()
    };
    fake.commit(&mut leases, turn).unwrap();
    let claim = leases.claim(w2, &ClaimFilter::default().limits(1, 0), &fake);
    let claimed: Vec<_> = (claim.unwrap().instances.into_iter())
        .filter(|i| i.holding == Holding::Claimed)
        .map(|i| i.id)
        .collect();
    assert_eq!(claimed, ["a"], "one instance per claim");
    fake.take_reads();
    let claim = leases.claim(w2, &ClaimFilter::default(), &fake).unwrap();
    let ids: Vec<_> = claim.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["b", "c", "s", "t"], "not `u`, which w1 holds");
    assert_eq!(
        fake.take_reads()[2],
        0,
        "the stalled list is not read again"
    );
}

#[test]
fn finished_instances_are_not_kept_as_holdings() {
    let (mut fake, mut leases) = opened();
    let w = leases.join(LONG);
    leases.claim(w, &ClaimFilter::default(), &fake).unwrap();
    for id in ["a", "b", "c", "s"] {
        let finish = Commit {
            instances: vec![(id.into(), record(Status::Completed { output: vec![] }))],
            lease: lease(w, &[]),
            ..Commit::default()
        };
        fake.commit(&mut leases, finish).unwrap();
    }
    let purge = Commit {
        instances_removed: vec!["a".into()],
        lease: lease(w, &[]),
        ..Commit::default()
    };
    fake.commit(&mut leases, purge).unwrap();
    assert!(leases.instances.is_empty(), "{:?}", leases.instances);
}

/// A task of the activity `charge` of instance `a`.
fn charge(seq: u64) -> WorkItem {
    WorkItem::Activity(crate::record::ActivityTask {
        instance: "a".into(),
        incarnation: 1,
        generation: 0,
        seq,
        key_seq: seq,
        activity: "charge".into(),
        input: Vec::new(),
        attempt: 1,
        attempt_timeout_ms: None,
    })
}

/// Tasks a claim leaves waiting for a limit are parked: later claims do not read them
/// all again, only as many as the limit could let one start.
#[test]
fn tasks_left_waiting_for_a_limit_are_not_read_again() {
    let mut fake = Fake::default();
    fake.records.insert("a".into(), record(Status::Running));
    for id in 0..100 {
        fake.items.insert(id, charge(id));
    }
    let mut leases = Leases::default();
    let w = leases.join(LONG);
    let mut limits = BTreeMap::new();
    limits.insert(
        "charge".to_owned(),
        crate::lease::ActivityLimits::new().concurrency(2),
    );
    let filter = ClaimFilter::default().activity_limits(limits);
    let first = leases.claim(w, &filter, &fake).unwrap();
    let ids: Vec<WorkId> = first.items.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [0, 1]);
    fake.take_reads();
    assert!(leases.claim(w, &filter, &fake).unwrap().is_empty());
    assert_eq!(fake.take_reads(), [0; 4], "no slot: nothing read");
    let done = Commit {
        dequeued: vec![0],
        lease: lease(w, &[]),
        ..Commit::default()
    };
    fake.commit(&mut leases, done).unwrap();
    let next = leases.claim(w, &filter, &fake).unwrap();
    let ids: Vec<WorkId> = next.items.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [2], "the next waiting task, in id order");
    assert_eq!(next.instances.len(), 1, "with its instance");
    assert_eq!(
        fake.take_reads(),
        [0, 1, 0, 1],
        "that task and its instance read"
    );
}

/// The tasks a worker's own commit left unclaimed are taken at once while their limit has
/// room, reading nothing; the rest wait for a claim, behind the tasks parked before them.
#[test]
fn a_workers_own_tasks_are_taken_at_once_while_their_limit_has_room() {
    let mut fake = Fake::default();
    fake.records.insert("a".into(), record(Status::Running));
    let mut leases = Leases::default();
    let (w, other) = (leases.join(LONG), leases.join(LONG));
    let mut limits = BTreeMap::new();
    limits.insert(
        "charge".to_owned(),
        crate::lease::ActivityLimits::new().concurrency(2),
    );
    let filter = ClaimFilter::default().activity_limits(limits);
    const NONE: [WorkId; 0] = [];
    let own = |ids: &[WorkId]| -> Vec<(WorkId, &'static str)> {
        ids.iter().map(|id| (*id, "charge")).collect()
    };
    // Before any claim read the queue, nothing is known unheld: none taken.
    let left = Commit {
        enqueued: vec![(1, charge(1)), (2, charge(2)), (3, charge(3))],
        lease: lease(w, &[1, 2, 3]),
        ..Commit::default()
    };
    fake.commit(&mut leases, left).unwrap();
    assert_eq!(
        leases.claim_tasks(w, &own(&[1, 2, 3]), &filter).unwrap(),
        NONE
    );
    let only_instances = ClaimFilter::default().activities(vec![]);
    leases.claim(other, &only_instances, &fake).unwrap();
    fake.take_reads();
    let taken = leases.claim_tasks(w, &own(&[1, 2, 3]), &filter).unwrap();
    assert_eq!(taken, [1, 2], "two slots, the oldest first");
    assert_eq!(fake.take_reads(), [0; 4], "nothing read");
    assert_eq!(leases.item_holder(1), Some(w));
    let what = "no slot left: a claim takes no third, nor does the worker again";
    assert!(
        leases.claim(other, &filter, &fake).unwrap().is_empty(),
        "{what}"
    );
    assert_eq!(
        leases.claim_tasks(w, &own(&[3]), &filter).unwrap(),
        NONE,
        "{what}"
    );
    // Task 3 is parked by now; a slot frees, and a new task of the worker's waits behind it.
    let done = Commit {
        dequeued: vec![1],
        enqueued: vec![(4, charge(4))],
        lease: lease(w, &[4]),
        ..Commit::default()
    };
    fake.commit(&mut leases, done).unwrap();
    let what = "tasks parked before wait longer: the worker's new one is left for a claim";
    assert_eq!(
        leases.claim_tasks(w, &own(&[4]), &filter).unwrap(),
        NONE,
        "{what}"
    );
    let claim = leases.claim(other, &filter, &fake).unwrap();
    let ids: Vec<WorkId> = claim.items.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [3], "{what}");
    // A task already held is not taken again.
    assert_eq!(leases.claim_tasks(w, &own(&[2, 3]), &filter).unwrap(), NONE);
}
