//! Checks of the fences of the lease contract (see [`crate::lease`]): a lapsed lease is
//! taken over, and its worker's commits write nothing; a commit on what another live
//! worker holds writes nothing; a commit without a lease is not fenced; a history append
//! must start where the stored history ends.

use std::time::Duration;

use super::Check;
use super::leases::{LONG, holdings, is_expired, is_fenced, item_ids, lease};
use super::records::{append, events, message, record, task};
use crate::error::StoreError;
use crate::lease::{ClaimFilter, Holding};
use crate::record::{Commit, Status};
use crate::store::Store;

/// The lease that lapses, by the store's clock: long enough that the calls made before
/// it should lapse take less, on a machine busy building and testing (300 ms did not).
const SHORT: Duration = Duration::from_millis(1500);

pub(super) fn lapsed_leases_are_taken_over_and_fenced(store: &impl Store) {
    let c = Check::new("lapsed_leases_are_taken_over_and_fenced", store);
    let all = ClaimFilter::default();
    c.commit(vec![Commit {
        instances: vec![
            ("x".into(), record("flow", Status::Running, 2)),
            ("y".into(), record("flow", Status::Running, 0)),
        ],
        history: vec![append("x", 0, events("x", 0..2))],
        enqueued: vec![(1, message("x", 1)), (2, task("y", 2))],
        ..Commit::default()
    }]);
    let stale = c.ok(store.join(SHORT));
    let live = c.ok(store.join(LONG));
    let first = c.ok(store.claim(stale, &all));
    c.expect(
        Ok(item_ids(&first)),
        vec![1, 2],
        "the first claim takes both items",
    );
    let what = "nothing is left while the first worker's lease is live";
    c.expect(store.claim(live, &all), Default::default(), what);
    std::thread::sleep(SHORT + Duration::from_millis(300));

    c.refused(
        store.renew(stale, LONG),
        is_expired(stale),
        "renewing a lapsed lease",
    );
    let stale_turn = Commit {
        instances: vec![("x".into(), record("flow", Status::Running, 3))],
        history: vec![append("x", 2, events("x", 2..3))],
        dequeued: vec![1],
        enqueued: vec![(3, message("x", 3))],
        progress: vec![("p".into(), Some(b"stale".to_vec()))],
        lease: lease(stale, &[]),
        ..Commit::default()
    };
    let got = store.commit(std::slice::from_ref(&stale_turn));
    c.refused(got, is_expired(stale), "a commit under a lapsed lease");
    let unchanged = |c: &Check<'_, _>, why: &str| {
        let what = format!("{why} writes nothing: the record");
        c.expect(
            store.instance("x"),
            Some(record("flow", Status::Running, 2)),
            &what,
        );
        let what = format!("{why} writes nothing: the history");
        c.expect(store.history("x"), events("x", 0..2), &what);
        let what = format!("{why} writes nothing: the queue");
        c.expect(
            store.work_items(),
            vec![(1, message("x", 1)), (2, task("y", 2))],
            &what,
        );
        let what = format!("{why} writes nothing: the progress");
        c.expect(store.progress("p"), None, &what);
    };
    unchanged(&c, "a commit under a lapsed lease");

    let takeover = c.ok(store.claim(live, &all));
    let what = "another worker takes over what a lapsed lease held";
    c.expect(Ok(item_ids(&takeover)), vec![1, 2], what);
    let names = holdings(&takeover);
    let what = "the takeover claims `x` (for its message) and `y` (for its task)";
    let want = vec![("x".to_owned(), true), ("y".to_owned(), true)];
    let got: Vec<_> = (names.into_iter())
        .map(|(id, holding)| (id, holding == Holding::Claimed))
        .collect();
    c.expect(Ok(got), want, what);

    // A third worker, live, on what `live` holds.
    let third = c.ok(store.join(LONG));
    let fenced = [
        (
            "writing an instance another live worker holds",
            Commit {
                instances: vec![("x".into(), record("flow", Status::Running, 3))],
                progress: vec![("p".into(), Some(b"third".to_vec()))],
                ..Commit::default()
            },
        ),
        (
            "appending to the history of an instance another live worker holds",
            Commit {
                history: vec![append("x", 2, events("x", 2..3))],
                progress: vec![("p".into(), Some(b"third".to_vec()))],
                ..Commit::default()
            },
        ),
        (
            "dequeuing an item another live worker holds",
            Commit {
                dequeued: vec![2],
                progress: vec![("p".into(), Some(b"third".to_vec()))],
                ..Commit::default()
            },
        ),
    ];
    for (how, mut commit) in fenced {
        commit.lease = lease(third, &[]);
        let got = store.commit(&[commit]);
        c.refused(got, is_fenced(third, live), how);
        unchanged(&c, how);
    }
    let got = store.commit(&[stale_turn]);
    c.refused(
        got,
        is_expired(stale),
        "a commit under a lapsed lease, after a takeover",
    );
    unchanged(&c, "a commit under a lapsed lease, after a takeover");

    // A commit without a lease (a tool's) is not fenced.
    c.commit(vec![Commit {
        progress: vec![("p".into(), Some(b"tool".to_vec()))],
        dequeued: vec![2],
        ..Commit::default()
    }]);
    let what = "a commit without a lease is written whoever holds what it touches";
    c.expect(store.progress("p"), Some(b"tool".to_vec()), what);
    // The new holder's turn.
    let done = Status::Completed { output: vec![] };
    c.commit(vec![Commit {
        instances: vec![("x".into(), record("flow", done, 3))],
        history: vec![append("x", 2, events("x", 2..3))],
        dequeued: vec![1],
        lease: lease(live, &[]),
        ..Commit::default()
    }]);
    c.expect(
        store.history("x"),
        events("x", 0..3),
        "the new holder's turn",
    );
    // A finished instance may be written by anyone, who then holds it.
    let mut restarted = record("flow", Status::Pending, 0);
    restarted.incarnation = 2;
    c.commit(vec![Commit {
        instances: vec![("x".into(), restarted.clone())],
        histories_removed: vec![("x".into(), 3)],
        enqueued: vec![(4, message("x", 4))],
        lease: lease(third, &[]),
        ..Commit::default()
    }]);
    let what = "a finished instance is written by another worker";
    c.expect(store.instance("x"), Some(restarted), what);
    let what = "nothing is left while the restarting worker holds `x`";
    c.expect(store.claim(live, &all), Default::default(), what);
    c.ok(store.leave(third));
    let after = c.ok(store.claim(live, &all));
    let what = "what a worker that left held is claimed at once";
    c.expect(Ok(item_ids(&after)), vec![4], what);
    let x = vec![("x".to_owned(), Holding::Claimed)];
    c.expect(Ok(holdings(&after)), x, what);
}

pub(super) fn history_appends_start_where_the_history_ends(store: &impl Store) {
    let c = Check::new("history_appends_start_where_the_history_ends", store);
    let refused = |commits: Vec<Commit>, instance: &str, first: u32, stored: u32, how: &str| {
        let mut commits = commits;
        commits.push(Commit {
            instances: vec![("witness".into(), record("flow", Status::Pending, 0))],
            ..Commit::default()
        });
        let got = store.commit(&commits);
        let is_conflict = |e: &StoreError| {
            matches!(e, StoreError::HistoryConflict { instance: i, first: f, stored: s }
                if i == instance && *f == first && *s == stored)
        };
        c.refused(got, is_conflict, how);
        let what = format!("{how} writes nothing");
        c.expect(store.instance("witness"), None, &what);
    };
    let at = |first: u32, range: std::ops::Range<u32>| Commit {
        history: vec![append("x", first, events("x", range))],
        ..Commit::default()
    };
    refused(
        vec![at(3, 3..4)],
        "x",
        3,
        0,
        "an append at 3 to an empty history",
    );
    c.expect(
        store.history("x"),
        vec![],
        "a refused append writes no event",
    );
    c.commit(vec![at(0, 0..3)]);
    refused(vec![at(2, 2..4)], "x", 2, 3, "an append over the end");
    refused(vec![at(4, 4..5)], "x", 4, 3, "an append past the end");
    let how = "a second append of one call that does not start where the first ends";
    refused(vec![at(3, 3..4), at(3, 3..4)], "x", 3, 4, how);
    c.expect(
        store.history("x"),
        events("x", 0..3),
        "refused appends write nothing",
    );
    c.commit(vec![at(3, 3..4), at(4, 4..6)]);
    c.expect(store.history("x"), events("x", 0..6), "appends in turn");
    let removed = || Commit {
        histories_removed: vec![("x".into(), 6)],
        ..Commit::default()
    };
    let how = "an append not at 0 after a removal in the same call";
    refused(vec![removed(), at(6, 6..7)], "x", 6, 0, how);
    c.expect(
        store.history("x"),
        events("x", 0..6),
        "a refused removal writes nothing",
    );
    c.commit(vec![removed(), at(0, 0..1)]);
    let what = "a removal then an append at 0 in one call";
    c.expect(store.history("x"), events("x", 0..1), what);
}
