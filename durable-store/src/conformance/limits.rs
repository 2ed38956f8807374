//! Checks of activity flow control at claim time ([`ActivityLimits`] in a
//! [`ClaimFilter`]): a concurrency limit counts the tasks live workers hold, across
//! workers and claims made at once; a rate limit counts starts per window and says when
//! the next one opens; waiting tasks go higher priority first; removing a held task frees
//! its slot and wakes the workers waiting for work. A limit on an orchestrator's running
//! instances starts pending ones in creation order as running ones finish.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Check;
use super::leases::{LONG, holdings, item_ids, lease};
use super::records::{message, record, task_of};
use crate::lease::{ActivityLimits, ClaimFilter, Holding, OrchestratorLimits};
use crate::record::{Commit, InstanceRecord, Status, WorkId, WorkItem};
use crate::store::Store;

/// A filter that limits each activity of `limits` as given.
fn limited(limits: &[(&str, ActivityLimits)]) -> ClaimFilter {
    let limits: BTreeMap<String, ActivityLimits> = (limits.iter())
        .map(|(name, limits)| ((*name).to_owned(), *limits))
        .collect();
    ClaimFilter::default().activity_limits(limits)
}

/// Instance `x`, running, with tasks `ids` of `activity` (seq = id), left for a claim.
fn tasks<S: Store + ?Sized>(c: &Check<'_, S>, ids: &[(WorkId, &str)]) {
    c.commit(vec![Commit {
        instances: vec![("x".into(), record("flow", Status::Running, 0))],
        enqueued: (ids.iter())
            .map(|(id, activity)| (*id, task_of("x", *id, activity)))
            .collect(),
        ..Commit::default()
    }]);
}

pub(super) fn a_concurrency_limit_counts_the_tasks_live_workers_hold(store: &impl Store) {
    let c = Check::new(
        "a_concurrency_limit_counts_the_tasks_live_workers_hold",
        store,
    );
    tasks(
        &c,
        &[
            (1, "charge"),
            (2, "charge"),
            (3, "charge"),
            (4, "charge"),
            (5, "mail"),
        ],
    );
    let filter = limited(&[("charge", ActivityLimits::new().concurrency(2))]);
    let (w1, w2) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    let first = c.ok(store.claim(w1, &filter));
    let what = "a claim takes two tasks of an activity limited to 2, and the unlimited task";
    c.expect(Ok(item_ids(&first)), vec![1, 2, 5], what);
    let what = "while two tasks of it are held, no claim takes a third";
    c.expect(Ok(item_ids(&c.ok(store.claim(w2, &filter)))), vec![], what);
    c.expect(Ok(item_ids(&c.ok(store.claim(w1, &filter)))), vec![], what);
    // w1 commits task 1's result: its slot frees.
    c.commit(vec![Commit {
        dequeued: vec![1],
        lease: lease(w1, &[]),
        ..Commit::default()
    }]);
    let what = "once a held task is removed, a claim takes the next waiting one";
    c.expect(Ok(item_ids(&c.ok(store.claim(w2, &filter)))), vec![3], what);
    c.expect(Ok(item_ids(&c.ok(store.claim(w2, &filter)))), vec![], what);
    // w1 leaves holding task 2: its slot frees, and task 2 is for a claim again.
    c.ok(store.leave(w1));
    let what = "the tasks a worker held when it left free their slots: the next claim \
                takes the lowest id waiting (and the unlimited task it held)";
    c.expect(
        Ok(item_ids(&c.ok(store.claim(w2, &filter)))),
        vec![2, 5],
        what,
    );
    c.expect(Ok(item_ids(&c.ok(store.claim(w2, &filter)))), vec![], what);
    let what = "a claim without the limit takes what is left";
    let rest = c.ok(store.claim(w2, &ClaimFilter::default()));
    c.expect(Ok(item_ids(&rest)), vec![4], what);
}

pub(super) fn waiting_tasks_go_higher_priority_first(store: &impl Store) {
    let c = Check::new("waiting_tasks_go_higher_priority_first", store);
    tasks(
        &c,
        &[(1, "low"), (2, "low"), (3, "high"), (4, "low"), (5, "high")],
    );
    let filter = limited(&[
        ("low", ActivityLimits::new().concurrency(10)),
        ("high", ActivityLimits::new().concurrency(10).priority(5)),
    ])
    .limits(10, 3);
    let w = c.ok(store.join(LONG));
    let claim = c.ok(store.claim(w, &filter));
    let what = "a claim with room for 3 takes both tasks of priority 5 and the oldest of \
                priority 0 (listed in id order)";
    c.expect(Ok(item_ids(&claim)), vec![1, 3, 5], what);
    let what = "the next claim takes the rest in id order";
    c.expect(
        Ok(item_ids(&c.ok(store.claim(w, &filter)))),
        vec![2, 4],
        what,
    );
}

pub(super) fn a_rate_limit_counts_starts_per_window(store: &impl Store) {
    let c = Check::new("a_rate_limit_counts_starts_per_window", store);
    let ids: Vec<(WorkId, &str)> = (1..=5).map(|id| (id, "mail")).collect();
    tasks(&c, &ids);
    let period = Duration::from_millis(600);
    let filter = limited(&[("mail", ActivityLimits::new().rate(2, period))]);
    let w = c.ok(store.join(LONG));
    let started = Instant::now();
    let first = c.ok(store.claim(w, &filter));
    c.expect(
        Ok(item_ids(&first)),
        vec![1, 2],
        "a claim starts 2 tasks of an activity limited to 2 per window",
    );
    let again = c.ok(store.claim(w, &filter));
    c.expect(
        Ok(item_ids(&again)),
        vec![],
        "no third start within the window, though no task is removed",
    );
    let after = again.retry_after.unwrap_or_else(|| {
        panic!(
            "conformance `{}`: a claim that left tasks for a rate limit should say when \
             the window opens",
            c.name
        )
    });
    assert!(
        after <= period,
        "conformance `{}`: the window opens within its period, said {after:?}",
        c.name
    );
    std::thread::sleep(after + Duration::from_millis(20));
    let next = c.ok(store.claim(w, &filter));
    assert!(
        started.elapsed() >= period.mul_f32(0.9),
        "conformance `{}`: claimed again before the window could open",
        c.name
    );
    c.expect(
        Ok(item_ids(&next)),
        vec![3, 4],
        "once the window opens, the next 2 start",
    );
}

pub(super) fn concurrent_claims_keep_a_concurrency_limit(store: &impl Store) {
    let c = Check::new("concurrent_claims_keep_a_concurrency_limit", store);
    let ids: Vec<(WorkId, &str)> = (1..=20).map(|id| (id, "charge")).collect();
    tasks(&c, &ids);
    let filter = limited(&[("charge", ActivityLimits::new().concurrency(3))]);
    let taken: Vec<WorkId> = std::thread::scope(|scope| {
        let claims: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let worker = c.ok(store.join(LONG));
                    let mut taken = Vec::new();
                    for _ in 0..3 {
                        taken.extend(item_ids(&c.ok(store.claim(worker, &filter))));
                    }
                    taken
                })
            })
            .collect();
        claims
            .into_iter()
            .flat_map(|claims| claims.join().unwrap())
            .collect()
    });
    let mut sorted = taken.clone();
    sorted.sort_unstable();
    c.expect(
        Ok(sorted),
        vec![1, 2, 3],
        "six workers claiming at once take exactly 3 tasks of an activity limited to 3, \
         the oldest",
    );
}

pub(super) fn removing_a_held_task_wakes_the_waiting_workers(store: &impl Store) {
    let c = Check::new("removing_a_held_task_wakes_the_waiting_workers", store);
    tasks(&c, &[(1, "charge"), (2, "charge")]);
    let filter = limited(&[("charge", ActivityLimits::new().concurrency(1))]);
    let (holder, waiter) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    c.expect(
        Ok(item_ids(&c.ok(store.claim(holder, &filter)))),
        vec![1],
        "the first claim",
    );
    c.expect(
        Ok(item_ids(&c.ok(store.claim(waiter, &filter)))),
        vec![],
        "no slot",
    );
    // A wait that returns at once (work signalled before it) is spent first.
    c.ok(store.wait_for_work(Duration::from_millis(50)));
    let long = Duration::from_secs(10);
    let waited = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            c.commit(vec![Commit {
                dequeued: vec![1],
                lease: lease(holder, &[]),
                ..Commit::default()
            }]);
        });
        let start = Instant::now();
        c.ok(store.wait_for_work(long));
        start.elapsed()
    });
    assert!(
        waited < Duration::from_secs(5),
        "conformance `{}`: wait_for_work({long:?}) should return soon after a held task of \
         a limited activity was removed, took {waited:?}",
        c.name
    );
    let claim = c.ok(store.claim(waiter, &filter));
    c.expect(
        Ok(item_ids(&claim)),
        vec![2],
        "the waiter takes the freed slot",
    );
    let is_task = |item: &WorkItem| matches!(item, WorkItem::Activity(_));
    assert!(claim.items.iter().all(|(_, item)| is_task(item)));
}

pub(super) fn a_max_running_limit_starts_pending_instances_in_creation_order(store: &impl Store) {
    let c = Check::new(
        "a_max_running_limit_starts_pending_instances_in_creation_order",
        store,
    );
    let pending = |created: u64| InstanceRecord {
        created_ms: 1_700_000_000_000 + created,
        ..record("flow", Status::Pending, 0)
    };
    // Created in the order p4, p1, p2, p3; `r` runs already.
    c.commit(vec![Commit {
        instances: vec![
            ("p1".into(), pending(2)),
            ("p2".into(), pending(3)),
            ("p3".into(), pending(4)),
            ("p4".into(), pending(1)),
            ("q".into(), record("other", Status::Pending, 0)),
            ("r".into(), record("flow", Status::Running, 0)),
        ],
        enqueued: vec![
            (1, message("p1", 1)),
            (2, message("p2", 1)),
            (3, message("p3", 1)),
            (4, message("p4", 1)),
            (5, message("q", 1)),
        ],
        ..Commit::default()
    }]);
    let mut limits = BTreeMap::new();
    limits.insert("flow".to_owned(), OrchestratorLimits::new().max_running(2));
    let filter = ClaimFilter::default().orchestrator_limits(limits);
    let (w1, w2) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    let first = c.ok(store.claim(w1, &filter));
    let what = "with `r` running and a limit of 2, a claim starts the first created pending \
                instance of `flow` (p4) and the unlimited one";
    c.expect(
        Ok((item_ids(&first), holdings(&first))),
        (
            vec![4, 5],
            // In creation order: `q` was created first.
            vec![
                ("q".to_owned(), Holding::Claimed),
                ("p4".to_owned(), Holding::Claimed),
            ],
        ),
        what,
    );
    let what = "a pending instance taken to start counts: no claim starts a third";
    c.expect(Ok(item_ids(&c.ok(store.claim(w2, &filter)))), vec![], what);
    c.expect(Ok(item_ids(&c.ok(store.claim(w1, &filter)))), vec![], what);
    // `r` finishes: its slot frees.
    c.commit(vec![Commit {
        instances: vec![(
            "r".into(),
            record("flow", Status::Completed { output: vec![] }, 1),
        )],
        ..Commit::default()
    }]);
    let what = "once a running instance finishes, the next created one starts";
    c.expect(Ok(item_ids(&c.ok(store.claim(w2, &filter)))), vec![1], what);
    // p4 starts on w1; then w1 leaves holding it, running: it still counts.
    c.commit(vec![Commit {
        instances: vec![(
            "p4".into(),
            InstanceRecord {
                status: Status::Running,
                ..pending(1)
            },
        )],
        dequeued: vec![4],
        lease: lease(w1, &[]),
        ..Commit::default()
    }]);
    c.ok(store.leave(w1));
    let what = "an instance that started counts while it runs, whoever held it: the claim \
                takes over only the unlimited instance the worker held";
    c.expect(Ok(item_ids(&c.ok(store.claim(w2, &filter)))), vec![5], what);
    // w2 leaves before p1 started: p1 is pending again, and counts no more.
    c.ok(store.leave(w2));
    let w3 = c.ok(store.join(LONG));
    let what = "a pending instance whose worker left before starting it is taken again \
                (before p2, created later), with the unlimited one that worker held";
    let again = c.ok(store.claim(w3, &filter));
    c.expect(
        Ok((item_ids(&again), holdings(&again))),
        (
            vec![1, 5],
            vec![
                ("q".to_owned(), Holding::Claimed),
                ("p1".to_owned(), Holding::Claimed),
            ],
        ),
        what,
    );
}

pub(super) fn finishing_a_limited_instance_wakes_the_waiting_workers(store: &impl Store) {
    let c = Check::new(
        "finishing_a_limited_instance_wakes_the_waiting_workers",
        store,
    );
    c.commit(vec![Commit {
        instances: vec![
            ("p1".into(), record("flow", Status::Pending, 0)),
            ("p2".into(), record("flow", Status::Pending, 0)),
        ],
        enqueued: vec![(1, message("p1", 1)), (2, message("p2", 1))],
        ..Commit::default()
    }]);
    let mut limits = BTreeMap::new();
    limits.insert("flow".to_owned(), OrchestratorLimits::new().max_running(1));
    let filter = ClaimFilter::default().orchestrator_limits(limits);
    let (holder, waiter) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    let first = c.ok(store.claim(holder, &filter));
    c.expect(Ok(item_ids(&first)), vec![1], "the first claim starts p1");
    c.commit(vec![Commit {
        instances: vec![("p1".into(), record("flow", Status::Running, 1))],
        dequeued: vec![1],
        lease: lease(holder, &[]),
        ..Commit::default()
    }]);
    c.expect(
        Ok(item_ids(&c.ok(store.claim(waiter, &filter)))),
        vec![],
        "no room for p2",
    );
    // A wait that returns at once (work signalled before it) is spent first.
    c.ok(store.wait_for_work(Duration::from_millis(50)));
    let long = Duration::from_secs(10);
    let waited = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            let done = Status::Completed { output: vec![] };
            c.commit(vec![Commit {
                instances: vec![("p1".into(), record("flow", done, 2))],
                lease: lease(holder, &[]),
                ..Commit::default()
            }]);
        });
        let start = Instant::now();
        c.ok(store.wait_for_work(long));
        start.elapsed()
    });
    assert!(
        waited < Duration::from_secs(5),
        "conformance `{}`: wait_for_work({long:?}) should return soon after a running \
         instance of a limited orchestrator finished, took {waited:?}",
        c.name
    );
    let claim = c.ok(store.claim(waiter, &filter));
    c.expect(Ok(item_ids(&claim)), vec![2], "the waiter starts p2");
}
