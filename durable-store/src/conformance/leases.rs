//! Checks of the lease contract (see [`crate::lease`]) that need no lease to lapse: workers
//! join, renew and leave; a claim takes what no live worker holds, as its filter and
//! limits allow; two workers claiming at once never take the same thing; work id
//! reservations; waiting for work.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Check;
use super::records::{message, record, task, task_of, timer};
use crate::error::StoreError;
use crate::lease::{Claim, ClaimFilter, CommitLease, Holding, WorkerId};
use crate::record::{Commit, Status, WorkId, WorkItem};
use crate::store::Store;

/// A lease no check outlives.
pub(super) const LONG: Duration = Duration::from_secs(120);

/// The lease of a commit by `worker` that leaves `unclaimed` to others.
pub(super) fn lease(worker: WorkerId, unclaimed: &[WorkId]) -> Option<CommitLease> {
    Some(CommitLease {
        worker,
        unclaimed: unclaimed.to_vec(),
        released: Vec::new(),
    })
}

/// The ids of the items a claim took.
pub(super) fn item_ids(claim: &Claim) -> Vec<WorkId> {
    claim.items.iter().map(|(id, _)| *id).collect()
}

/// The instances a claim names, with how the worker stands with each.
pub(super) fn holdings(claim: &Claim) -> Vec<(String, Holding)> {
    (claim.instances.iter())
        .map(|instance| (instance.id.clone(), instance.holding))
        .collect()
}

pub(super) fn is_expired(worker: WorkerId) -> impl Fn(&StoreError) -> bool {
    move |e| matches!(e, StoreError::LeaseExpired { worker: w } if *w == worker)
}

pub(super) fn is_fenced(worker: WorkerId, holder: WorkerId) -> impl Fn(&StoreError) -> bool {
    move |e| matches!(e, StoreError::Fenced { worker: w, holder: h, .. } if *w == worker && *h == holder)
}

pub(super) fn workers_join_renew_and_leave(store: &impl Store) {
    let c = Check::new("workers_join_renew_and_leave", store);
    let a = c.ok(store.join(LONG));
    let b = c.ok(store.join(LONG));
    assert!(
        a != 0 && b != 0 && a != b,
        "conformance `{}`: join should give distinct worker ids, never 0; got {a} and {b}",
        c.name
    );
    c.ok(store.renew(a, LONG));
    c.ok(store.leave(a));
    c.refused(
        store.renew(a, LONG),
        is_expired(a),
        "renewing after leaving",
    );
    c.ok(store.leave(a));
    let filter = ClaimFilter::default();
    c.refused(
        store.claim(a, &filter),
        is_expired(a),
        "claiming after leaving",
    );
    let after_leaving = Commit {
        instances: vec![("x".into(), record("flow", Status::Pending, 0))],
        progress: vec![("p".into(), Some(b"1".to_vec()))],
        lease: lease(a, &[]),
        ..Commit::default()
    };
    let got = store.commit(&[after_leaving]);
    c.refused(got, is_expired(a), "a commit after leaving");
    c.expect(store.instance("x"), None, "a refused commit writes nothing");
    c.expect(store.progress("p"), None, "a refused commit writes nothing");
    c.ok(store.renew(b, LONG));
    let d = c.ok(store.join(LONG));
    assert!(
        d != a && d != b,
        "conformance `{}`: a worker id is never given again; got {d} after {a} and {b}",
        c.name
    );
    c.expect(
        store.claim(b, &filter),
        Claim::default(),
        "a claim on an empty store",
    );
}

pub(super) fn claims_take_what_no_live_worker_holds(store: &impl Store) {
    let c = Check::new("claims_take_what_no_live_worker_holds", store);
    let running = || record("flow", Status::Running, 0);
    let stalled = Status::Stalled {
        failure: crate::record::Failure {
            kind: crate::record::FailureKind::Panicked,
            message: "no code".into(),
        },
    };
    let done = Status::Completed { output: vec![] };
    c.commit(vec![Commit {
        instances: vec![
            ("a".into(), running()),
            ("d".into(), record("flow", done, 0)),
            ("m".into(), running()),
            ("o".into(), record("other", Status::Running, 0)),
            ("s".into(), record("flow", stalled, 0)),
            ("t".into(), running()),
        ],
        enqueued: vec![
            (1, message("m", 1)),
            (2, timer("t", 1)),
            (3, task("a", 1)),
            (4, message("o", 1)),
            (5, message("d", 1)),
            (6, task_of("d", 2, "mail")),
            (7, message("ghost", 1)),
            (8, task_of("o", 2, "mail")),
        ],
        ..Commit::default()
    }]);
    let (w1, w2) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    let flow = ClaimFilter::default()
        .orchestrators(vec!["flow".into()])
        .activities(vec!["charge".into()]);
    let first = c.ok(store.claim(w1, &flow));
    let what = "a claim for orchestrator `flow` and activity `charge` should take the messages \
                and timers of `flow` instances, `charge` tasks, and every item of finished or \
                absent instances";
    c.expect(Ok(item_ids(&first)), vec![1, 2, 3, 5, 6, 7], what);
    let got = holdings(&first);
    let what = "the claim should take the unheld `flow` instances with items (messages, timers \
                or tasks), and the stalled one; and no other";
    let names: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    c.expect(Ok(names), vec!["a", "m", "s", "t"], what);
    for (id, holding) in &got {
        assert!(
            *holding == Holding::Claimed,
            "conformance `{}`: instance `{id}`, which no live worker held, should be \
             Holding::Claimed with its first item (`a`: its activity task), got {holding:?}",
            c.name,
        );
    }
    let m = first.instances.iter().find(|i| i.id == "m");
    let what = "a claimed instance comes with its record as stored";
    c.expect(Ok(m.map(|i| i.record.clone())), Some(running()), what);
    let what = "a claim does not take again what the worker holds";
    c.expect(store.claim(w1, &flow), Claim::default(), what);
    let second = c.ok(store.claim(w2, &ClaimFilter::default()));
    let what = "another worker's claim takes only what the first left";
    c.expect(Ok(item_ids(&second)), vec![4, 8], what);
    let what = "another worker's claim takes the instance the first left";
    let o = vec![("o".to_owned(), Holding::Claimed)];
    c.expect(Ok(holdings(&second)), o, what);

    // A turn of `m` under w1's lease: it keeps its timer and task, and leaves its message
    // to `o` (which w2 holds) unclaimed.
    c.commit(vec![Commit {
        instances: vec![("m".into(), record("flow", Status::Running, 1))],
        dequeued: vec![1],
        enqueued: vec![
            (10, timer("m", 2)),
            (11, message("o", 2)),
            (12, task("m", 3)),
        ],
        lease: lease(w1, &[11]),
        ..Commit::default()
    }]);
    let third = c.ok(store.claim(w2, &ClaimFilter::default()));
    let what = "the holder of `o` takes the message another worker left it, and only that";
    c.expect(Ok(item_ids(&third)), vec![11], what);
    let o = vec![("o".to_owned(), Holding::Held)];
    c.expect(Ok(holdings(&third)), o, what);
    let what = "the items a worker's commit keeps are not claimed, even by itself";
    c.expect(
        store.claim(w1, &ClaimFilter::default()),
        Claim::default(),
        what,
    );
    // A commit without a lease leaves every item it enqueues to a claim.
    c.commit(vec![Commit {
        enqueued: vec![(13, message("m", 4))],
        ..Commit::default()
    }]);
    let what = "a message for an instance another live worker holds is not claimed";
    c.expect(
        store.claim(w2, &ClaimFilter::default()),
        Claim::default(),
        what,
    );
    let fourth = c.ok(store.claim(w1, &ClaimFilter::default()));
    let what = "the holder of `m` takes the message a commit without a lease enqueued";
    c.expect(Ok(item_ids(&fourth)), vec![13], what);
    let m = vec![("m".to_owned(), Holding::Held)];
    c.expect(Ok(holdings(&fourth)), m, what);
}

pub(super) fn claims_keep_their_limits(store: &impl Store) {
    let c = Check::new("claims_keep_their_limits", store);
    let ids: Vec<String> = (0..6).map(|n| format!("i{n}")).collect();
    let mut enqueued: Vec<(WorkId, WorkItem)> = Vec::new();
    for (n, id) in (0..).zip(&ids) {
        enqueued.push((2 * n, message(id, 2 * n)));
        enqueued.push((2 * n + 1, message(id, 2 * n + 1)));
    }
    enqueued.extend((20..24).map(|n| (n, task("i0", n))));
    let all: BTreeSet<WorkId> = enqueued.iter().map(|(id, _)| *id).collect();
    c.commit(vec![Commit {
        instances: (ids.iter())
            .map(|id| (id.clone(), record("flow", Status::Pending, 0)))
            .collect(),
        enqueued,
        ..Commit::default()
    }]);
    let mut taken = BTreeSet::new();
    let mut claimed = BTreeSet::new();
    let mut take = |claim: &Claim, max_instances: usize, max_items: usize| {
        let newly: Vec<&str> = (claim.instances.iter())
            .filter(|i| i.holding == Holding::Claimed)
            .map(|i| i.id.as_str())
            .collect();
        assert!(
            newly.len() <= max_instances && claim.items.len() <= max_items,
            "conformance `{}`: a claim limited to {max_instances} instances and {max_items} \
             items took {newly:?} and {:?}",
            c.name,
            item_ids(claim)
        );
        for id in item_ids(claim) {
            assert!(
                taken.insert(id),
                "conformance `{}`: item {id} taken twice",
                c.name
            );
        }
        for id in newly {
            let fresh = claimed.insert(id.to_owned());
            assert!(fresh, "conformance `{}`: `{id}` claimed twice", c.name);
        }
    };
    let w0 = c.ok(store.join(LONG));
    let zero = c.ok(store.claim(w0, &ClaimFilter::default().limits(0, 0)));
    take(&zero, 1, 1);
    let what = "a claim with limits of 0 takes one item";
    c.expect(Ok(zero.items.len()), 1, what);
    let w = c.ok(store.join(LONG));
    for _ in 0..20 {
        let claim = c.ok(store.claim(w, &ClaimFilter::default().limits(2, 3)));
        if claim.is_empty() {
            break;
        }
        take(&claim, 2, 3);
    }
    // The second message of `i0` waits for the worker that holds it.
    let rest = c.ok(store.claim(w0, &ClaimFilter::default()));
    take(&rest, 0, usize::MAX);
    let what = "the holder of `i0` takes the message of `i0` the others left";
    c.expect(
        Ok(holdings(&rest)),
        vec![("i0".to_owned(), Holding::Held)],
        what,
    );
    let what = "claims in turn should take every item";
    c.expect(Ok(taken), all, what);
    let what = "claims in turn should take every instance";
    c.expect(Ok(claimed), ids.into_iter().collect(), what);
}

pub(super) fn concurrent_claims_never_take_the_same_thing(store: &impl Store) {
    let c = Check::new("concurrent_claims_never_take_the_same_thing", store);
    let ids: Vec<String> = (0..30).map(|n| format!("i{n:02}")).collect();
    let mut enqueued: Vec<(WorkId, WorkItem)> = Vec::new();
    for (n, id) in (0..).zip(&ids) {
        enqueued.push((3 * n, message(id, 0)));
        enqueued.push((3 * n + 1, message(id, 1)));
        enqueued.push((3 * n + 2, task(id, 2)));
    }
    let all: BTreeSet<WorkId> = enqueued.iter().map(|(id, _)| *id).collect();
    c.commit(vec![Commit {
        instances: (ids.iter())
            .map(|id| (id.clone(), record("flow", Status::Running, 0)))
            .collect(),
        enqueued,
        ..Commit::default()
    }]);
    let total = all.len();
    let taken_so_far = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let worker = c.ok(store.join(LONG));
        let (mut items, mut instances) = (Vec::new(), Vec::new());
        let mut empty = 0;
        // A claim may find nothing while the other's is under way: stop at three empty
        // claims in a row, or when everything is taken.
        while empty < 3 && taken_so_far.load(std::sync::atomic::Ordering::SeqCst) < total {
            let claim = c.ok(store.claim(worker, &ClaimFilter::default().limits(2, 4)));
            if claim.is_empty() {
                empty += 1;
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            empty = 0;
            taken_so_far.fetch_add(claim.items.len(), std::sync::atomic::Ordering::SeqCst);
            items.extend(item_ids(&claim));
            instances.extend(
                (claim.instances.into_iter())
                    .filter(|i| i.holding == Holding::Claimed)
                    .map(|i| i.id),
            );
        }
        (items, instances)
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(work);
        let second = scope.spawn(work);
        (first.join().unwrap(), second.join().unwrap())
    });
    let mut items = BTreeSet::new();
    for id in first.0.iter().chain(&second.0) {
        let once = items.insert(*id);
        assert!(
            once,
            "conformance `{}`: both workers took item {id}",
            c.name
        );
    }
    c.expect(Ok(items), all, "the two workers together take every item");
    let mut instances = BTreeSet::new();
    for id in first.1.iter().chain(&second.1) {
        let once = instances.insert(id.clone());
        assert!(
            once,
            "conformance `{}`: both workers claimed `{id}`",
            c.name
        );
    }
    let what = "the two workers together claim every instance";
    c.expect(Ok(instances), ids.into_iter().collect(), what);
}

pub(super) fn work_ids_are_reserved_apart(store: &impl Store) {
    let c = Check::new("work_ids_are_reserved_apart", store);
    c.commit(vec![Commit {
        enqueued: vec![(5, message("x", 5)), (100, message("x", 100))],
        ..Commit::default()
    }]);
    let first = c.ok(store.reserve_work_ids(10));
    assert!(
        first > 100,
        "conformance `{}`: reserved ids should be above every id the store holds (100), got \
         {first}",
        c.name
    );
    // Ids a caller chose itself count too.
    c.commit(vec![Commit {
        enqueued: vec![(first + 1000, message("x", 1000))],
        ..Commit::default()
    }]);
    let next = c.ok(store.reserve_work_ids(1));
    assert!(
        next > first + 1000,
        "conformance `{}`: reserved ids should be above every id the store holds ({}), got \
         {next}",
        c.name,
        first + 1000
    );
    let mut ranges: Vec<(WorkId, WorkId)> = vec![(first, first + 10), (next, next + 1)];
    std::thread::scope(|scope| {
        let reserve = || {
            (0..20)
                .map(|n| {
                    let start = c.ok(store.reserve_work_ids(n + 1));
                    (start, start + n + 1)
                })
                .collect::<Vec<_>>()
        };
        let a = scope.spawn(reserve);
        let b = scope.spawn(reserve);
        ranges.extend(a.join().unwrap());
        ranges.extend(b.join().unwrap());
    });
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "conformance `{}`: reserved ranges {:?} and {:?} overlap",
            c.name,
            pair[0],
            pair[1]
        );
    }
}

pub(super) fn waiting_for_work_wakes_on_unclaimed_work(store: &impl Store) {
    let c = Check::new("waiting_for_work_wakes_on_unclaimed_work", store);
    let (waiter, sender) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    c.ok(store.wait_for_work(timeout));
    let waited = start.elapsed();
    assert!(
        waited >= timeout.mul_f32(0.75) && waited < Duration::from_secs(3),
        "conformance `{}`: wait_for_work({timeout:?}) with nothing to wake it should return \
         after about its timeout, took {waited:?}",
        c.name
    );
    let long = Duration::from_secs(10);
    let waited = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            c.commit(vec![Commit {
                instances: vec![("x".into(), record("flow", Status::Running, 0))],
                enqueued: vec![(1, task("x", 1)), (2, message("y", 1))],
                lease: lease(sender, &[2]),
                ..Commit::default()
            }]);
        });
        let start = Instant::now();
        c.ok(store.wait_for_work(long));
        start.elapsed()
    });
    assert!(
        waited < Duration::from_secs(5),
        "conformance `{}`: wait_for_work({long:?}) should return soon after another worker \
         left an item unclaimed, took {waited:?}",
        c.name
    );
    let claim = c.ok(store.claim(waiter, &ClaimFilter::default()));
    let what = "the waiter claims the item left unclaimed";
    c.expect(Ok(item_ids(&claim)), vec![2], what);
}

/// An instance a commit writes and releases (a sub-orchestration of an orchestrator its
/// worker does not have) is not held by that worker: another worker's claim takes it with
/// its first message, while the writer keeps the instances it did not release.
pub(super) fn released_instances_are_left_for_a_claim(store: &impl Store) {
    let c = Check::new("released_instances_are_left_for_a_claim", store);
    let (parent_worker, child_worker) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    // An earlier child under the id, finished, that the parent's worker held: the new one
    // replaces it (the retry-a-child pattern).
    c.commit(vec![Commit {
        instances: vec![(
            "child".into(),
            record("other", Status::Completed { output: vec![] }, 0),
        )],
        lease: lease(parent_worker, &[]),
        ..Commit::default()
    }]);
    c.commit(vec![Commit {
        instances: vec![
            ("parent".into(), record("flow", Status::Running, 0)),
            ("child".into(), record("other", Status::Pending, 0)),
        ],
        enqueued: vec![(1, message("child", 1)), (2, timer("parent", 1))],
        lease: Some(CommitLease {
            worker: parent_worker,
            unclaimed: vec![1],
            released: vec!["child".into()],
        }),
        ..Commit::default()
    }]);
    let claim = c.ok(store.claim(child_worker, &ClaimFilter::default()));
    let what = "another worker's claim takes the released instance with its message, and \
                leaves the instance the writer holds";
    c.expect(
        Ok((holdings(&claim), item_ids(&claim))),
        (vec![("child".to_owned(), Holding::Claimed)], vec![1]),
        what,
    );
}
