//! Checks of what one call to `commit` writes: round trips, overwrites and deletions, the
//! commits of one call in order, removals before writes.

use super::Check;
use super::records::{append, events, message, record, task};
use crate::error::StoreError;
use crate::record::{Commit, Status};
use crate::store::Store;

pub(super) fn empty_store_reads_nothing(store: &impl Store) {
    let c = Check::new("empty_store_reads_nothing", store);
    c.commit(vec![]);
    c.commit(vec![Commit::default(), Commit::default()]);
    c.expect(
        store.instance("x"),
        None,
        "instance(\"x\") of an empty store",
    );
    c.expect(store.instances(), vec![], "instances() of an empty store");
    c.expect(
        store.history("x"),
        vec![],
        "history(\"x\") of an empty store",
    );
    c.expect(store.work_items(), vec![], "work_items() of an empty store");
    c.expect(
        store.progress("x"),
        None,
        "progress(\"x\") of an empty store",
    );
}

pub(super) fn commit_round_trips(store: &impl Store) {
    let c = Check::new("commit_round_trips", store);
    let history = events("order-1", 0..3);
    let record = record("order", Status::Running, 3);
    c.commit(vec![Commit {
        instances: vec![("order-1".into(), record.clone())],
        history: vec![append("order-1", 0, history.clone())],
        enqueued: vec![
            (3, message("order-1", 7)),
            (1, task("order-1", 1)),
            (2, message("order-1", 8)),
        ],
        ..Commit::default()
    }]);
    c.expect(
        store.instance("order-1"),
        Some(record.clone()),
        "instance(\"order-1\")",
    );
    c.expect(
        store.instances(),
        vec![("order-1".to_owned(), record)],
        "instances()",
    );
    c.expect(store.history("order-1"), history, "history(\"order-1\")");
    let queue = vec![
        (1, task("order-1", 1)),
        (2, message("order-1", 8)),
        (3, message("order-1", 7)),
    ];
    c.expect(
        store.work_items(),
        queue,
        "work_items() should be in id order",
    );
}

pub(super) fn progress_puts_overwrites_and_deletes(store: &impl Store) {
    let c = Check::new("progress_puts_overwrites_and_deletes", store);
    let put = |key: &str, value: Option<&[u8]>| Commit {
        progress: vec![(key.to_owned(), value.map(<[u8]>::to_vec))],
        ..Commit::default()
    };
    c.commit(vec![
        put("k", Some(b"1")),
        put("k/2", Some(b"other")),
        put("empty", Some(b"")),
    ]);
    c.expect(
        store.progress("k"),
        Some(b"1".to_vec()),
        "progress(\"k\") after a put",
    );
    c.expect(
        store.progress("empty"),
        Some(vec![]),
        "an empty value is not a deletion",
    );
    c.commit(vec![put("k", Some(b"2"))]);
    c.expect(
        store.progress("k"),
        Some(b"2".to_vec()),
        "progress(\"k\") after an overwrite",
    );
    c.commit(vec![put("k", None), put("never-written", None)]);
    c.expect(store.progress("k"), None, "progress(\"k\") after a delete");
    c.expect(
        store.progress("never-written"),
        None,
        "deleting a missing key",
    );
    let what = "deleting \"k\" must not touch \"k/2\"";
    c.expect(store.progress("k/2"), Some(b"other".to_vec()), what);
}

pub(super) fn one_call_applies_every_commit_in_order(store: &impl Store) {
    let c = Check::new("one_call_applies_every_commit_in_order", store);
    let done = Status::Completed {
        output: b"ok".to_vec(),
    };
    c.commit(vec![
        Commit {
            instances: vec![
                ("x".into(), record("flow", Status::Pending, 0)),
                ("y".into(), record("other", Status::Pending, 0)),
            ],
            enqueued: vec![(10, message("x", 0))],
            progress: vec![("p".into(), Some(b"1".to_vec()))],
            ..Commit::default()
        },
        Commit {
            instances: vec![("x".into(), record("flow", Status::Running, 1))],
            history: vec![append("x", 0, events("x", 0..1))],
            dequeued: vec![10],
            enqueued: vec![(11, task("x", 1)), (12, message("x", 1))],
            ..Commit::default()
        },
        Commit {
            instances: vec![("x".into(), record("flow", done.clone(), 2))],
            history: vec![append("x", 1, events("x", 1..2))],
            dequeued: vec![12],
            progress: vec![("p".into(), None)],
            ..Commit::default()
        },
    ]);
    let (x, y) = (record("flow", done, 2), record("other", Status::Pending, 0));
    c.expect(
        store.instance("x"),
        Some(x),
        "the last commit's record of \"x\" wins",
    );
    c.expect(
        store.instance("y"),
        Some(y),
        "\"y\" was written by the first commit",
    );
    c.expect(
        store.history("x"),
        events("x", 0..2),
        "history(\"x\") gathers both appends",
    );
    let what = "items enqueued then dequeued within one call are gone";
    c.expect(store.work_items(), vec![(11, task("x", 1))], what);
    let what = "progress put then deleted within one call is gone";
    c.expect(store.progress("p"), None, what);
}

pub(super) fn removals_apply_before_writes(store: &impl Store) {
    let c = Check::new("removals_apply_before_writes", store);
    c.commit(vec![Commit {
        instances: vec![
            ("gone".into(), record("flow", Status::Running, 3)),
            ("renewed".into(), record("flow", Status::Running, 3)),
            ("ab".into(), record("flow", Status::Running, 2)),
        ],
        history: vec![
            append("gone", 0, events("gone", 0..3)),
            append("renewed", 0, events("renewed", 0..3)),
            append("ab", 0, events("ab", 0..2)),
        ],
        ..Commit::default()
    }]);
    // A purge, and a continue-as-new that restarts a history in the same commit.
    c.commit(vec![Commit {
        histories_removed: vec![("gone".into(), 3), ("renewed".into(), 3)],
        instances_removed: vec!["gone".into()],
        instances: vec![("renewed".into(), record("flow", Status::Running, 1))],
        history: vec![append("renewed", 0, events("next", 0..1))],
        ..Commit::default()
    }]);
    c.expect(
        store.instance("gone"),
        None,
        "a removed instance should be gone",
    );
    c.expect(
        store.history("gone"),
        vec![],
        "a removed history should be gone",
    );
    c.expect(
        store.history("renewed"),
        events("next", 0..1),
        "a history removed and appended in one commit should hold only the new events",
    );
    c.expect(
        store.history("ab"),
        events("ab", 0..2),
        "removing one history should leave the others",
    );
}

/// A commit's expectations (`Commit::expected`) are checked against what the call's earlier
/// commits wrote, else against the store; one that fails refuses the whole call, and a
/// later commit of the call that writes the same instance is not applied without it.
pub(super) fn expectations_refuse_the_whole_call(store: &impl Store) {
    let c = Check::new("expectations_refuse_the_whole_call", store);
    let start = |id: &str, status| Commit {
        expected: vec![(id.into(), None)],
        instances: vec![(id.into(), record("flow", status, 0))],
        ..Commit::default()
    };
    let turn = |id: &str| Commit {
        instances: vec![(id.into(), record("flow", Status::Running, 1))],
        history: vec![append(id, 0, events(id, 0..1))],
        ..Commit::default()
    };
    // Absent: the start creates it, and the turn after it in the call goes on with it.
    c.commit(vec![start("x", Status::Pending), turn("x")]);
    let running = record("flow", Status::Running, 1);
    let what = "a start and a turn of one new instance in one call";
    c.expect(store.instance("x"), Some(running.clone()), what);
    // Present: a second start refuses the call whole, the turn beside it included.
    let mut again = turn("x");
    again.instances[0].1.status = Status::Completed {
        output: b"1".to_vec(),
    };
    again.history = vec![append("x", 1, events("x", 1..2))];
    again.progress = vec![("beside".into(), Some(b"1".to_vec()))];
    c.refused(
        store.commit(&[start("x", Status::Pending), again]),
        |e| matches!(e, StoreError::InstanceChanged { instance, .. } if instance == "x"),
        "a start of an id that exists",
    );
    let what = "a refused call writes nothing: the instance as it was";
    c.expect(store.instance("x"), Some(running), what);
    c.expect(store.history("x"), events("x", 0..1), what);
    c.expect(store.progress("beside"), None, what);
    // An expected incarnation that is not the stored one refuses the call too.
    let restart = Commit {
        expected: vec![("x".into(), Some(7))],
        instances_removed: vec!["x".into()],
        ..Commit::default()
    };
    c.refused(
        store.commit(&[restart]),
        |e| matches!(e, StoreError::InstanceChanged { .. }),
        "a purge that expects another run",
    );
    c.expect(store.instance("x").map(|r| r.is_some()), true, "not purged");
}
