//! A conformance suite for [`Store`] implementations.
//!
//! Call [`run`] (and, for a store on disk, [`run_reopen`]) from a test; each check panics
//! with a message naming the check and what the store did wrong.
//!
//! # Examples
//!
//! ```
//! durable_store::conformance::run(durable_store::MemoryStore::default);
//! ```

use std::path::Path;

use crate::record::{
    ActivityTask, Commit, Event, HistoryAppend, InstanceRecord, Status, WorkId, WorkItem,
};
use crate::store::{Store, StoreError};

/// Runs every check, each on a fresh store from `make`.
///
/// # Panics
///
/// When the store breaks the contract of [`Store`]; the message names the check.
pub fn run<S: Store>(make: impl Fn() -> S) {
    empty_store_reads_nothing(&make());
    commit_round_trips(&make());
    histories_keep_order_and_stay_apart(&make());
    work_queue_is_in_id_order(&make());
    progress_puts_overwrites_and_deletes(&make());
    one_call_applies_every_commit_in_order(&make());
    instances_are_in_id_order(&make());
}

/// Checks that what was committed survives dropping the store and opening `dir` again, twice.
///
/// `dir` must be empty or absent; `open` opens the store in it.
///
/// # Panics
///
/// When data is lost or changed across a reopen.
pub fn run_reopen<S: Store>(dir: &Path, open: impl Fn(&Path) -> S) {
    const CHECK: &str = "run_reopen";
    {
        let store = open(dir);
        commit(
            &store,
            CHECK,
            vec![
                Commit {
                    instances: vec![("x".into(), record("flow", Status::Running, 3))],
                    history: vec![append("x", 0, events("x", 0..3))],
                    enqueued: vec![(1, message("x", 9)), (2, task("x", 1))],
                    progress: vec![("x/1".into(), Some(b"half".to_vec()))],
                    ..Commit::default()
                },
                Commit {
                    instances: vec![("y".into(), record("flow", Status::Pending, 0))],
                    ..Commit::default()
                },
            ],
        );
        commit(
            &store,
            CHECK,
            vec![Commit {
                history: vec![append("x", 3, events("x", 3..4))],
                dequeued: vec![1],
                ..Commit::default()
            }],
        );
    }
    {
        let store = open(dir);
        let expect = format!("conformance `{CHECK}`: after the first reopen");
        assert_eq!(
            ok(CHECK, store.instances()),
            vec![
                ("x".to_owned(), record("flow", Status::Running, 3)),
                ("y".to_owned(), record("flow", Status::Pending, 0)),
            ],
            "{expect}, instances() differs"
        );
        assert_eq!(
            ok(CHECK, store.history("x")),
            events("x", 0..4),
            "{expect}, history(\"x\") differs"
        );
        assert_eq!(
            ok(CHECK, store.work_items()),
            vec![(2, task("x", 1))],
            "{expect}, work_items() differs"
        );
        assert_eq!(
            ok(CHECK, store.progress("x/1")),
            Some(b"half".to_vec()),
            "{expect}, progress differs"
        );
        commit(
            &store,
            CHECK,
            vec![Commit {
                instances: vec![(
                    "x".into(),
                    record("flow", Status::Completed { output: vec![1] }, 4),
                )],
                dequeued: vec![2],
                progress: vec![("x/1".into(), None)],
                ..Commit::default()
            }],
        );
    }
    let store = open(dir);
    let expect = format!("conformance `{CHECK}`: after the second reopen");
    assert_eq!(
        ok(CHECK, store.instance("x")),
        Some(record("flow", Status::Completed { output: vec![1] }, 4)),
        "{expect}, instance(\"x\") differs"
    );
    assert_eq!(
        ok(CHECK, store.history("x")),
        events("x", 0..4),
        "{expect}, history(\"x\") differs"
    );
    assert_eq!(
        ok(CHECK, store.work_items()),
        vec![],
        "{expect}, the work queue should be empty"
    );
    assert_eq!(
        ok(CHECK, store.progress("x/1")),
        None,
        "{expect}, deleted progress came back"
    );
}

fn empty_store_reads_nothing(store: &impl Store) {
    const CHECK: &str = "empty_store_reads_nothing";
    let expect = format!("conformance `{CHECK}`");
    commit(store, CHECK, vec![]);
    commit(store, CHECK, vec![Commit::default(), Commit::default()]);
    assert_eq!(
        ok(CHECK, store.instance("x")),
        None,
        "{expect}: instance(\"x\") of an empty store"
    );
    assert_eq!(
        ok(CHECK, store.instances()),
        vec![],
        "{expect}: instances() of an empty store"
    );
    assert_eq!(
        ok(CHECK, store.history("x")),
        vec![],
        "{expect}: history(\"x\") of an empty store"
    );
    assert_eq!(
        ok(CHECK, store.work_items()),
        vec![],
        "{expect}: work_items() of an empty store"
    );
    assert_eq!(
        ok(CHECK, store.progress("x")),
        None,
        "{expect}: progress(\"x\") of an empty store"
    );
}

fn commit_round_trips(store: &impl Store) {
    const CHECK: &str = "commit_round_trips";
    let expect = format!("conformance `{CHECK}`");
    let history = events("order-1", 0..3);
    let record = record("order", Status::Running, 3);
    commit(
        store,
        CHECK,
        vec![Commit {
            instances: vec![("order-1".into(), record.clone())],
            history: vec![append("order-1", 0, history.clone())],
            enqueued: vec![
                (3, message("order-1", 7)),
                (1, task("order-1", 1)),
                (2, message("order-1", 8)),
            ],
            ..Commit::default()
        }],
    );
    assert_eq!(
        ok(CHECK, store.instance("order-1")),
        Some(record.clone()),
        "{expect}: instance(\"order-1\")"
    );
    assert_eq!(
        ok(CHECK, store.instances()),
        vec![("order-1".to_owned(), record)],
        "{expect}: instances()"
    );
    assert_eq!(
        ok(CHECK, store.history("order-1")),
        history,
        "{expect}: history(\"order-1\")"
    );
    assert_eq!(
        ok(CHECK, store.work_items()),
        vec![
            (1, task("order-1", 1)),
            (2, message("order-1", 8)),
            (3, message("order-1", 7))
        ],
        "{expect}: work_items() should list the enqueued items in id order"
    );
}

fn histories_keep_order_and_stay_apart(store: &impl Store) {
    const CHECK: &str = "histories_keep_order_and_stay_apart";
    let expect = format!("conformance `{CHECK}`");
    // Ids that are prefixes of each other, hold separators, or need two length bytes.
    let long = "a".repeat(300);
    let ids = [
        "a",
        "ab",
        "a:b",
        "a/b",
        "a:",
        "b",
        "a\u{0}",
        "ü",
        long.as_str(),
    ];
    let round = |r: u32| Commit {
        history: ids
            .iter()
            .map(|id| append(id, 2 * r, events(id, 2 * r..2 * r + 2)))
            .collect(),
        ..Commit::default()
    };
    // Two rounds in calls of their own, then two in one call.
    commit(store, CHECK, vec![round(0)]);
    commit(store, CHECK, vec![round(1)]);
    commit(store, CHECK, vec![round(2), round(3)]);
    for id in ids {
        assert_eq!(
            ok(CHECK, store.history(id)),
            events(id, 0..8),
            "{expect}: history({id:?}) should hold its own 8 events, in order"
        );
    }
    for id in ["", "a:b:", "c", "a\u{0}\u{0}"] {
        assert_eq!(
            ok(CHECK, store.history(id)),
            vec![],
            "{expect}: history({id:?}) was never written"
        );
    }
    // Past 255 and 65,535 events the index needs more than one and two bytes.
    let many = events("many", 0..70_000);
    commit(
        store,
        CHECK,
        vec![Commit {
            history: vec![append("many", 0, many[..40_000].to_vec())],
            ..Commit::default()
        }],
    );
    commit(
        store,
        CHECK,
        vec![Commit {
            history: vec![append("many", 40_000, many[40_000..].to_vec())],
            ..Commit::default()
        }],
    );
    assert!(
        ok(CHECK, store.history("many")) == many,
        "{expect}: history(\"many\") should return its 70,000 events in index order"
    );
}

fn work_queue_is_in_id_order(store: &impl Store) {
    const CHECK: &str = "work_queue_is_in_id_order";
    let expect = format!("conformance `{CHECK}`");
    let ids: [WorkId; 7] = [256, 1, 70_000, 2, 1 << 40, 0, u64::MAX];
    commit(
        store,
        CHECK,
        vec![Commit {
            enqueued: ids.iter().map(|&id| (id, message("q", id))).collect(),
            ..Commit::default()
        }],
    );
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let listed = |store: &dyn Store| -> Vec<WorkId> {
        ok(CHECK, store.work_items())
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    assert_eq!(
        listed(store),
        sorted,
        "{expect}: work_items() should be in numeric id order"
    );
    commit(
        store,
        CHECK,
        vec![Commit {
            dequeued: vec![1, 70_000, 12_345],
            enqueued: vec![(3, task("q", 3))],
            ..Commit::default()
        }],
    );
    assert_eq!(
        listed(store),
        vec![0, 2, 3, 256, 1 << 40, u64::MAX],
        "{expect}: dequeued items should disappear (an unknown id is ignored) and enqueued ones appear"
    );
    let items = ok(CHECK, store.work_items());
    assert_eq!(
        items[2],
        (3, task("q", 3)),
        "{expect}: work item 3 should read back as written"
    );
    assert_eq!(
        items[3],
        (256, message("q", 256)),
        "{expect}: work item 256 should read back as written"
    );
}

fn progress_puts_overwrites_and_deletes(store: &impl Store) {
    const CHECK: &str = "progress_puts_overwrites_and_deletes";
    let expect = format!("conformance `{CHECK}`");
    let put = |key: &str, value: Option<&[u8]>| Commit {
        progress: vec![(key.to_owned(), value.map(<[u8]>::to_vec))],
        ..Commit::default()
    };
    commit(
        store,
        CHECK,
        vec![
            put("k", Some(b"1")),
            put("k/2", Some(b"other")),
            put("empty", Some(b"")),
        ],
    );
    assert_eq!(
        ok(CHECK, store.progress("k")),
        Some(b"1".to_vec()),
        "{expect}: progress(\"k\") after a put"
    );
    assert_eq!(
        ok(CHECK, store.progress("empty")),
        Some(vec![]),
        "{expect}: an empty value is not a deletion"
    );
    commit(store, CHECK, vec![put("k", Some(b"2"))]);
    assert_eq!(
        ok(CHECK, store.progress("k")),
        Some(b"2".to_vec()),
        "{expect}: progress(\"k\") after an overwrite"
    );
    commit(
        store,
        CHECK,
        vec![put("k", None), put("never-written", None)],
    );
    assert_eq!(
        ok(CHECK, store.progress("k")),
        None,
        "{expect}: progress(\"k\") after a delete"
    );
    assert_eq!(
        ok(CHECK, store.progress("never-written")),
        None,
        "{expect}: deleting a missing key"
    );
    assert_eq!(
        ok(CHECK, store.progress("k/2")),
        Some(b"other".to_vec()),
        "{expect}: deleting \"k\" must not touch \"k/2\""
    );
}

fn one_call_applies_every_commit_in_order(store: &impl Store) {
    const CHECK: &str = "one_call_applies_every_commit_in_order";
    let expect = format!("conformance `{CHECK}`");
    let done = Status::Completed {
        output: b"ok".to_vec(),
    };
    commit(
        store,
        CHECK,
        vec![
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
        ],
    );
    assert_eq!(
        ok(CHECK, store.instance("x")),
        Some(record("flow", done, 2)),
        "{expect}: the last commit's record of \"x\" wins"
    );
    assert_eq!(
        ok(CHECK, store.instance("y")),
        Some(record("other", Status::Pending, 0)),
        "{expect}: \"y\" written by the first commit"
    );
    assert_eq!(
        ok(CHECK, store.history("x")),
        events("x", 0..2),
        "{expect}: history(\"x\") gathers both appends"
    );
    assert_eq!(
        ok(CHECK, store.work_items()),
        vec![(11, task("x", 1))],
        "{expect}: items enqueued then dequeued within one call are gone"
    );
    assert_eq!(
        ok(CHECK, store.progress("p")),
        None,
        "{expect}: progress put then deleted within one call is gone"
    );
}

fn instances_are_in_id_order(store: &impl Store) {
    const CHECK: &str = "instances_are_in_id_order";
    let expect = format!("conformance `{CHECK}`");
    let ids = ["b", "a", "ab", "B", "a:b", "ä", "a/", "a"];
    commit(
        store,
        CHECK,
        vec![Commit {
            instances: ids
                .iter()
                .map(|id| (id.to_string(), record(id, Status::Pending, 0)))
                .collect(),
            ..Commit::default()
        }],
    );
    commit(
        store,
        CHECK,
        vec![Commit {
            instances: vec![("ab".into(), record("ab", Status::Running, 1))],
            ..Commit::default()
        }],
    );
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let listed = ok(CHECK, store.instances());
    let listed_ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        listed_ids, sorted,
        "{expect}: instances() should list each id once, in byte order"
    );
    let ab = listed
        .iter()
        .find(|(id, _)| id == "ab")
        .map(|(_, record)| record);
    assert_eq!(
        ab,
        Some(&record("ab", Status::Running, 1)),
        "{expect}: a rewritten record replaces the old one"
    );
}

/// Commits `commits` in one call, panicking with the check's name if the store fails.
fn commit(store: &(impl Store + ?Sized), check: &str, commits: Vec<Commit>) {
    ok(check, store.commit(&commits));
}

fn ok<T>(check: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("conformance `{check}`: the store returned an error: {e}"))
}

fn record(orchestrator: &str, status: Status, history_len: u32) -> InstanceRecord {
    InstanceRecord {
        orchestrator: orchestrator.to_owned(),
        input: orchestrator.as_bytes().to_vec(),
        status,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000 + u64::from(history_len),
        history_len,
    }
}

/// Events `range` of instance `id`, each telling which instance and index it belongs to.
fn events(id: &str, range: std::ops::Range<u32>) -> Vec<Event> {
    range
        .map(|index| Event::ActivityCompleted {
            seq: u64::from(index),
            output: format!("{id}#{index}").into_bytes(),
        })
        .collect()
}

fn append(id: &str, first: u32, events: Vec<Event>) -> HistoryAppend {
    HistoryAppend {
        instance: id.to_owned(),
        first,
        events,
    }
}

fn message(instance: &str, seq: u64) -> WorkItem {
    WorkItem::Message {
        instance: instance.to_owned(),
        event: Event::ActivityCompleted {
            seq,
            output: seq.to_be_bytes().to_vec(),
        },
    }
}

fn task(instance: &str, seq: u64) -> WorkItem {
    WorkItem::Activity(ActivityTask {
        instance: instance.to_owned(),
        seq,
        activity: "charge".to_owned(),
        input: vec![1, 2, 3],
        attempt: 1,
    })
}
