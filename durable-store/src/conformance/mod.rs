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

use std::fmt::Debug;
use std::path::Path;

use crate::keys::MAX_KEY_LEN;
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
    removals_apply_before_writes(&make());
    refused_keys_write_nothing(&make());
}

/// Checks that what was committed survives dropping the store and opening `dir` again, twice.
///
/// `dir` must be empty or absent; `open` opens the store in it.
///
/// # Panics
///
/// When data is lost or changed across a reopen.
pub fn run_reopen<S: Store>(dir: &Path, open: impl Fn(&Path) -> S) {
    let done = || record("flow", Status::Completed { output: vec![1] }, 4);
    {
        let store = open(dir);
        let c = Check::new("run_reopen: before the first reopen", &store);
        c.commit(vec![
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
        ]);
        c.commit(vec![Commit {
            history: vec![append("x", 3, events("x", 3..4))],
            dequeued: vec![1],
            ..Commit::default()
        }]);
    }
    {
        let store = open(dir);
        let c = Check::new("run_reopen: after the first reopen", &store);
        let records = vec![
            ("x".to_owned(), record("flow", Status::Running, 3)),
            ("y".to_owned(), record("flow", Status::Pending, 0)),
        ];
        c.expect(
            store.instances(),
            records,
            "instances() lost or changed records",
        );
        c.expect(
            store.history("x"),
            events("x", 0..4),
            "history(\"x\") changed",
        );
        c.expect(
            store.work_items(),
            vec![(2, task("x", 1))],
            "work_items() changed",
        );
        c.expect(
            store.progress("x/1"),
            Some(b"half".to_vec()),
            "progress changed",
        );
        c.commit(vec![Commit {
            instances: vec![("x".into(), done())],
            dequeued: vec![2],
            progress: vec![("x/1".into(), None)],
            ..Commit::default()
        }]);
    }
    let store = open(dir);
    let c = Check::new("run_reopen: after the second reopen", &store);
    c.expect(
        store.instance("x"),
        Some(done()),
        "instance(\"x\") lost its update",
    );
    c.expect(
        store.history("x"),
        events("x", 0..4),
        "history(\"x\") changed",
    );
    c.expect(store.work_items(), vec![], "dequeued work came back");
    c.expect(store.progress("x/1"), None, "deleted progress came back");
}

fn empty_store_reads_nothing(store: &impl Store) {
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

fn commit_round_trips(store: &impl Store) {
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

fn histories_keep_order_and_stay_apart(store: &impl Store) {
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

fn work_queue_is_in_id_order(store: &impl Store) {
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

fn progress_puts_overwrites_and_deletes(store: &impl Store) {
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

fn one_call_applies_every_commit_in_order(store: &impl Store) {
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

fn instances_are_in_id_order(store: &impl Store) {
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

fn removals_apply_before_writes(store: &impl Store) {
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

fn refused_keys_write_nothing(store: &impl Store) {
    let c = Check::new("refused_keys_write_nothing", store);
    let longest = "k".repeat(MAX_KEY_LEN);
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    // The longest keys and the last event index are accepted.
    c.commit(vec![Commit {
        instances: vec![(longest.clone(), record("flow", Status::Pending, 1))],
        history: vec![
            append(&longest, 0, events("longest", 0..1)),
            append("last", u32::MAX, events("last", 0..1)),
        ],
        progress: vec![(longest.clone(), Some(b"1".to_vec()))],
        ..Commit::default()
    }]);
    let what = "an id of the longest length should be stored";
    c.expect(store.history(&longest), events("longest", 0..1), what);
    let what = "an event at index 2^32 - 1 should be stored";
    c.expect(store.history("last"), events("last", 0..1), what);
    let what = "a progress key of the longest length should be stored";
    c.expect(store.progress(&longest), Some(b"1".to_vec()), what);

    let good = || Commit {
        instances: vec![("good".into(), record("flow", Status::Pending, 0))],
        progress: vec![("good".into(), Some(b"1".to_vec()))],
        ..Commit::default()
    };
    let refused: [(&str, &str, &str, Commit); 6] = [
        (
            "an empty instance id",
            "instance id",
            "",
            Commit {
                instances: vec![(String::new(), record("flow", Status::Pending, 0))],
                ..Commit::default()
            },
        ),
        (
            "an empty id in a removal",
            "instance id",
            "",
            Commit {
                instances_removed: vec![String::new()],
                ..Commit::default()
            },
        ),
        (
            "an instance id one byte too long",
            "instance id",
            &too_long,
            Commit {
                history: vec![append(&too_long, 0, events("x", 0..1))],
                ..Commit::default()
            },
        ),
        (
            "an empty progress key",
            "progress key",
            "",
            Commit {
                progress: vec![(String::new(), None)],
                ..Commit::default()
            },
        ),
        (
            "a progress key one byte too long",
            "progress key",
            &too_long,
            Commit {
                progress: vec![(too_long.clone(), Some(vec![]))],
                ..Commit::default()
            },
        ),
        (
            "events past index 2^32 - 1",
            "events of instance",
            "last",
            Commit {
                history: vec![append("last", u32::MAX, events("last", 1..3))],
                ..Commit::default()
            },
        ),
    ];
    for (how, want_what, key, bad) in refused {
        let quoted = match store.commit(&[good(), bad]) {
            Err(StoreError::InvalidKey { what, key, .. }) if what == want_what => key,
            other => panic!(
                "conformance `{}`: {how} should be refused with StoreError::InvalidKey {{ what: \
                 {want_what:?}, .. }}, got {other:?}",
                c.name
            ),
        };
        assert!(
            quoted.chars().count() <= 65 && key.starts_with(quoted.trim_end_matches('…')),
            "conformance `{}`: the error for {how} should quote at most 64 characters of the \
             key, got {quoted:?}",
            c.name
        );
        let what = format!("a call refused for {how} should write nothing");
        c.expect(store.instance("good"), None, &what);
        c.expect(store.progress("good"), None, &what);
    }
    let what = "a refused append should leave the history as it was";
    c.expect(store.history("last"), events("last", 0..1), what);
}

/// One check of the suite on one store: makes its calls and names it when one goes wrong.
struct Check<'a, S: ?Sized> {
    name: &'static str,
    store: &'a S,
}

impl<'a, S: Store + ?Sized> Check<'a, S> {
    fn new(name: &'static str, store: &'a S) -> Self {
        Self { name, store }
    }

    /// Commits `commits` in one call.
    #[track_caller]
    fn commit(&self, commits: Vec<Commit>) {
        self.ok(self.store.commit(&commits));
    }

    #[track_caller]
    fn ok<T>(&self, result: Result<T, StoreError>) -> T {
        result.unwrap_or_else(|e| {
            panic!(
                "conformance `{}`: the store returned an error: {e}",
                self.name
            )
        })
    }

    /// Asserts that a read returned `want`; `what` says what was read.
    #[track_caller]
    fn expect<T: PartialEq + Debug>(&self, got: Result<T, StoreError>, want: T, what: &str) {
        let got = self.ok(got);
        assert!(
            got == want,
            "conformance `{}`: {what}\n   got: {got:?}\n  want: {want:?}",
            self.name
        );
    }
}

fn record(orchestrator: &str, status: Status, history_len: u32) -> InstanceRecord {
    InstanceRecord {
        version: 1,
        orchestrator: orchestrator.to_owned(),
        input: orchestrator.as_bytes().to_vec(),
        status,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000 + u64::from(history_len),
        history_len,
        incarnation: 1,
        generation: 0,
        custom_status: None,
        parent: None,
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
        incarnation: 1,
        generation: Some(0),
        event: Event::ActivityCompleted {
            seq,
            output: seq.to_be_bytes().to_vec(),
        },
    }
}

fn task(instance: &str, seq: u64) -> WorkItem {
    WorkItem::Activity(ActivityTask {
        instance: instance.to_owned(),
        incarnation: 1,
        generation: 0,
        seq,
        key_seq: seq,
        activity: "charge".to_owned(),
        input: vec![1, 2, 3],
        attempt: 1,
        attempt_timeout_ms: Some(500),
    })
}
