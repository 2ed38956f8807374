//! Checks of activity and orchestrator limits under the faults an adversarial review of
//! issue 16 looked for: tasks of equal priority taken in the order they were scheduled,
//! whatever their activity; a worker whose lease lapses while it holds slots (freed
//! exactly once, its late result refused); and no slot left taken once the work is done,
//! whatever way it ended (a result, a retry, a termination, a worker that left).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Check;
use super::leases::{LONG, is_expired, item_ids, lease};
use super::records::{message, record, task_of, timer};
use crate::lease::{ActivityLimits, ClaimFilter, OrchestratorLimits};
use crate::record::{Commit, InstanceRecord, Status, WorkId};
use crate::store::Store;

/// A lease the check waits out.
const SHORT: Duration = Duration::from_millis(1500);

/// A filter that limits each activity of `limits` as given.
fn limited(limits: &[(&str, ActivityLimits)]) -> ClaimFilter {
    let limits: BTreeMap<String, ActivityLimits> = (limits.iter())
        .map(|(name, limits)| ((*name).to_owned(), *limits))
        .collect();
    ClaimFilter::default().activity_limits(limits)
}

/// Tasks `ids` (id, activity) of running instance `instance` (of orchestrator `work`),
/// left for a claim.
fn enqueue<S: Store + ?Sized>(c: &Check<'_, S>, instance: &str, ids: &[(WorkId, &str)]) {
    c.commit(vec![Commit {
        instances: vec![(instance.into(), record("work", Status::Running, 0))],
        enqueued: (ids.iter())
            .map(|(id, activity)| (*id, task_of(instance, *id, activity)))
            .collect(),
        ..Commit::default()
    }]);
}

pub(super) fn equal_priorities_go_in_id_order_across_activities(store: &impl Store) {
    let c = Check::new("equal_priorities_go_in_id_order_across_activities", store);
    enqueue(&c, "x", &[(1, "b"), (2, "a"), (3, "a"), (4, "b")]);
    let limits = ActivityLimits::new().concurrency(10);
    let filter = limited(&[("a", limits), ("b", limits), ("urgent", limits.priority(5))]);
    let w = c.ok(store.join(LONG));
    let what = "with room for 2, a claim takes the 2 oldest tasks of priority 0, whatever \
                their activity (not every task of the activity named first)";
    let claim = c.ok(store.claim(w, &filter.clone().limits(10, 2)));
    c.expect(Ok(item_ids(&claim)), vec![1, 2], what);
    // A task of higher priority arrives while 3 and 4 wait.
    enqueue(&c, "x", &[(5, "urgent")]);
    let one = filter.limits(10, 1);
    let what = "a task of higher priority that arrives goes before older ones waiting";
    c.expect(Ok(item_ids(&c.ok(store.claim(w, &one)))), vec![5], what);
    let what = "then the waiting ones, oldest first";
    c.expect(Ok(item_ids(&c.ok(store.claim(w, &one)))), vec![3], what);
    c.expect(Ok(item_ids(&c.ok(store.claim(w, &one)))), vec![4], what);
}

pub(super) fn a_lapsed_workers_slots_free_once_and_its_late_result_is_refused(store: &impl Store) {
    let c = Check::new(
        "a_lapsed_workers_slots_free_once_and_its_late_result_is_refused",
        store,
    );
    enqueue(&c, "x", &[(1, "charge"), (2, "charge"), (3, "charge")]);
    let filter = limited(&[("charge", ActivityLimits::new().concurrency(2))]);
    let lapses = c.ok(store.join(SHORT));
    let what = "the worker about to lapse takes both slots";
    c.expect(
        Ok(item_ids(&c.ok(store.claim(lapses, &filter)))),
        vec![1, 2],
        what,
    );
    let (w2, w3) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    c.expect(
        Ok(item_ids(&c.ok(store.claim(w2, &filter)))),
        vec![],
        "no slot",
    );
    std::thread::sleep(SHORT + Duration::from_millis(300));
    let what = "once its lease lapsed, its 2 slots free, once: a claim takes its 2 tasks \
                again, and no third";
    c.expect(
        Ok(item_ids(&c.ok(store.claim(w2, &filter)))),
        vec![1, 2],
        what,
    );
    c.expect(Ok(item_ids(&c.ok(store.claim(w3, &filter)))), vec![], what);
    // The lapsed worker's late result is refused, and frees nothing.
    let late = store.commit(&[Commit {
        dequeued: vec![1],
        lease: lease(lapses, &[]),
        ..Commit::default()
    }]);
    c.refused(late, is_expired(lapses), "a lapsed worker's result");
    let what = "the refused result freed no slot";
    c.expect(Ok(item_ids(&c.ok(store.claim(w3, &filter)))), vec![], what);
    c.commit(vec![Commit {
        dequeued: vec![1],
        lease: lease(w2, &[]),
        ..Commit::default()
    }]);
    let what = "the result of the worker that took it over frees one slot";
    c.expect(Ok(item_ids(&c.ok(store.claim(w3, &filter)))), vec![3], what);
}

pub(super) fn no_slot_stays_taken_once_the_work_is_done(store: &impl Store) {
    let c = Check::new("no_slot_stays_taken_once_the_work_is_done", store);
    let pending = |created: u64| InstanceRecord {
        created_ms: 1_700_000_000_000 + created,
        ..record("flow", Status::Pending, 0)
    };
    let terminated = || Status::Terminated {
        reason: "stop".into(),
    };
    // Instance x with 4 tasks of `charge` (2 at once); p1 and p2 wait to start (1 runs).
    enqueue(
        &c,
        "x",
        &[(1, "charge"), (2, "charge"), (3, "charge"), (4, "charge")],
    );
    c.commit(vec![Commit {
        instances: vec![("p1".into(), pending(1)), ("p2".into(), pending(2))],
        enqueued: vec![(10, message("p1", 1)), (11, message("p2", 1))],
        ..Commit::default()
    }]);
    let mut orchestrators = BTreeMap::new();
    orchestrators.insert("flow".to_owned(), OrchestratorLimits::new().max_running(1));
    let filter = limited(&[("charge", ActivityLimits::new().concurrency(2))])
        .orchestrator_limits(orchestrators);
    let (w1, w2) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    let what = "a claim takes 2 tasks and starts p1";
    c.expect(
        Ok(item_ids(&c.ok(store.claim(w1, &filter)))),
        vec![1, 2, 10],
        what,
    );
    // Task 1 succeeds; task 2 fails and is retried after a backoff (a timer, then a new
    // task of the activity left for a claim); p1 starts.
    c.commit(vec![Commit {
        instances: vec![(
            "p1".into(),
            InstanceRecord {
                status: Status::Running,
                ..pending(1)
            },
        )],
        dequeued: vec![1, 2, 10],
        enqueued: vec![(20, timer("x", 20))],
        lease: lease(w1, &[]),
        ..Commit::default()
    }]);
    c.commit(vec![Commit {
        dequeued: vec![20],
        enqueued: vec![(21, task_of("x", 21, "charge"))],
        lease: lease(w1, &[21]),
        ..Commit::default()
    }]);
    let what = "the two slots freed: a claim takes the next two tasks (the retry, \
                scheduled later, waits)";
    c.expect(
        Ok(item_ids(&c.ok(store.claim(w2, &filter)))),
        vec![3, 4],
        what,
    );
    // x is terminated while w2 runs its tasks (a commit without a lease, as a tool's);
    // p1 is terminated while it runs, p2 before it started.
    c.commit(vec![Commit {
        instances: vec![
            ("x".into(), record("work", terminated(), 1)),
            ("p1".into(), record("flow", terminated(), 1)),
            ("p2".into(), record("flow", terminated(), 0)),
        ],
        ..Commit::default()
    }]);
    // w2's result for task 3 comes after the termination; w2 leaves holding task 4.
    c.commit(vec![Commit {
        dequeued: vec![3],
        lease: lease(w2, &[]),
        ..Commit::default()
    }]);
    c.ok(store.leave(w2));
    // What is left of x's (4, 21) and p2's (11) is for a claim to remove.
    let w3 = c.ok(store.join(LONG));
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.extend(item_ids(&c.ok(store.claim(w3, &filter))));
    }
    rest.sort_unstable();
    let what = "the items of the finished instances are taken, to be removed";
    c.expect(Ok(rest.clone()), vec![4, 11, 21], what);
    c.commit(vec![Commit {
        dequeued: rest,
        lease: lease(w3, &[]),
        ..Commit::default()
    }]);
    // All done: every slot is free.
    enqueue(&c, "y", &[(30, "charge"), (31, "charge"), (32, "charge")]);
    c.commit(vec![Commit {
        instances: vec![("q1".into(), pending(3)), ("q2".into(), pending(4))],
        enqueued: vec![(40, message("q1", 1)), (41, message("q2", 1))],
        ..Commit::default()
    }]);
    let w4 = c.ok(store.join(LONG));
    let what = "once all work is done, both slots of the activity and the one running \
                instance are free";
    c.expect(
        Ok(item_ids(&c.ok(store.claim(w4, &filter)))),
        vec![30, 31, 40],
        what,
    );
}
