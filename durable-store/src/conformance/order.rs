//! Checks that reads return instances, histories and the work queue in key order, each
//! key apart from its look-alikes (prefixes, separators, long ids).

use super::Check;
use super::records::{append, events, message, record, task};
use crate::record::{Commit, Status, WorkId};
use crate::store::Store;

pub(super) fn histories_keep_order_and_stay_apart(store: &impl Store) {
    let c = Check::new("histories_keep_order_and_stay_apart", store);
    // Ids that are prefixes of each other, hold separators, or need two length bytes.
    let long = "a".repeat(300);
    let ids = ["a", "ab", "a:b", "a/b", "a:", "b", "a\u{0}", "ü", &long];
    let round = |r: u32| Commit {
        history: ids
            .iter()
            .map(|id| append(id, 2 * r, events(id, 2 * r..2 * r + 2)))
            .collect(),
        ..Commit::default()
    };
    // Two rounds in calls of their own, then two in one call.
    c.commit(vec![round(0)]);
    c.commit(vec![round(1)]);
    c.commit(vec![round(2), round(3)]);
    for id in ids {
        let what = format!("history({id:?}) should hold its own 8 events, in order");
        c.expect(store.history(id), events(id, 0..8), &what);
    }
    for id in ["", "a:b:", "c", "a\u{0}\u{0}"] {
        let what = format!("history({id:?}) was never written");
        c.expect(store.history(id), vec![], &what);
    }
    // Past 255 and 65,535 events an index needs a second and a third byte.
    let many = events("many", 0..70_000);
    let (head, tail) = many.split_at(40_000);
    c.commit(vec![Commit {
        history: vec![append("many", 0, head.to_vec())],
        ..Commit::default()
    }]);
    c.commit(vec![Commit {
        history: vec![append("many", 40_000, tail.to_vec())],
        ..Commit::default()
    }]);
    let got = c.ok(store.history("many"));
    let wrong = got.iter().zip(&many).position(|(got, want)| got != want);
    assert!(
        got.len() == many.len() && wrong.is_none(),
        "conformance `{}`: history(\"many\") should return 70,000 events in index order; \
         got {} events, the first wrong one at {wrong:?}",
        c.name,
        got.len()
    );
}

pub(super) fn work_queue_is_in_id_order(store: &impl Store) {
    let c = Check::new("work_queue_is_in_id_order", store);
    let ids: [WorkId; 7] = [256, 1, 70_000, 2, 1 << 40, 0, u64::MAX];
    c.commit(vec![Commit {
        enqueued: ids.iter().map(|&id| (id, message("q", id))).collect(),
        ..Commit::default()
    }]);
    let mut queue: Vec<_> = ids.iter().map(|&id| (id, message("q", id))).collect();
    queue.sort_unstable_by_key(|(id, _)| *id);
    c.expect(
        store.work_items(),
        queue.clone(),
        "work_items() should be in numeric id order",
    );
    c.commit(vec![Commit {
        dequeued: vec![1, 70_000, 12_345],
        enqueued: vec![(3, task("q", 3))],
        ..Commit::default()
    }]);
    queue.retain(|(id, _)| ![1, 70_000].contains(id));
    queue.insert(2, (3, task("q", 3)));
    c.expect(
        store.work_items(),
        queue,
        "dequeued items should disappear (an unknown id is ignored) and enqueued ones appear",
    );
}

pub(super) fn instances_are_in_id_order(store: &impl Store) {
    let c = Check::new("instances_are_in_id_order", store);
    let ids = ["b", "a", "ab", "B", "a:b", "ä", "a/", "a"];
    c.commit(vec![Commit {
        instances: ids
            .iter()
            .map(|id| (id.to_string(), record(id, Status::Pending, 0)))
            .collect(),
        ..Commit::default()
    }]);
    c.commit(vec![Commit {
        instances: vec![("ab".into(), record("ab", Status::Running, 1))],
        ..Commit::default()
    }]);
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let want: Vec<_> = sorted
        .into_iter()
        .map(|id| match id {
            "ab" => (id.to_owned(), record(id, Status::Running, 1)),
            _ => (id.to_owned(), record(id, Status::Pending, 0)),
        })
        .collect();
    let what = "instances() should list each id once, in byte order, with its latest record";
    c.expect(store.instances(), want, what);
}
