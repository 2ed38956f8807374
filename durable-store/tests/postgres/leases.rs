//! Leases on PostgreSQL: workers of several handles (processes) sharing one database, by
//! the database's clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use durable_store::{
    ActivityTask, ClaimFilter, Commit, CommitLease, Event, Failure, FailureKind, HistoryAppend,
    Holding, InstanceRecord, PostgresStore, SCHEMA_VERSION, Status, Store, StoreError,
    TestDatabase, TestServer, WorkId, WorkItem, WorkerId,
};

use super::{append, event, work};

/// Two handles (two processes, as far as the server can tell) on one new database.
fn two_handles() -> (TestDatabase, PostgresStore, PostgresStore) {
    let database = TestServer::shared().database();
    let a = PostgresStore::open(database.url()).unwrap();
    let b = PostgresStore::open(database.url()).unwrap();
    (database, a, b)
}

fn record(orchestrator: &str, created_ms: u64) -> InstanceRecord {
    InstanceRecord::pending(orchestrator.into(), 1, b"{}".to_vec(), created_ms, 1, None)
}

fn task(instance: &str, seq: u64) -> WorkItem {
    WorkItem::Activity(ActivityTask {
        instance: instance.into(),
        incarnation: 1,
        generation: 0,
        seq,
        key_seq: seq,
        activity: "charge".into(),
        input: b"{}".to_vec(),
        attempt: 1,
        attempt_timeout_ms: None,
    })
}

fn leased(worker: WorkerId, commit: Commit) -> Commit {
    Commit {
        lease: Some(CommitLease {
            worker,
            unclaimed: Vec::new(),
            released: Vec::new(),
        }),
        ..commit
    }
}

/// Instance `id`, created with a message (work id `n`) no worker holds.
fn started(id: &str, n: WorkId) -> Commit {
    Commit {
        instances: vec![(id.into(), record("flow", n))],
        enqueued: vec![(n, work(id, n as u32))],
        ..Commit::default()
    }
}

fn ids(claim: &durable_store::Claim) -> Vec<WorkId> {
    claim.items.iter().map(|(id, _)| *id).collect()
}

/// Workers of two handles claiming at once, in small claims, never take the same item or
/// instance, and between them take everything.
#[test]
fn workers_claiming_at_once_never_take_the_same_thing() {
    let (_database, a, b) = two_handles();
    const N: u64 = 300;
    let seed: Vec<Commit> = (1..=N)
        .map(|n| {
            let mut commit = started(&format!("i{n}"), n);
            commit.enqueued.push((N + n, task(&format!("i{n}"), n)));
            commit
        })
        .collect();
    a.commit(&seed).unwrap();
    let run = |store: &PostgresStore| {
        let worker = store.join(Duration::from_secs(60)).unwrap();
        let filter = ClaimFilter::default().limits(7, 11);
        let (mut items, mut instances) = (Vec::new(), Vec::new());
        let mut empty = 0;
        while empty < 3 {
            let claim = store.claim(worker, &filter).unwrap();
            if claim.items.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            assert!(claim.items.len() <= 11, "{}", claim.items.len());
            let newly = claim
                .instances
                .iter()
                .filter(|i| i.holding == Holding::Claimed);
            assert!(newly.clone().count() <= 7);
            instances.extend(newly.map(|i| i.id.clone()));
            items.extend(ids(&claim));
        }
        (items, instances)
    };
    let ((items_a, instances_a), (items_b, instances_b)) = std::thread::scope(|scope| {
        let one = scope.spawn(|| run(&a));
        let two = scope.spawn(|| run(&b));
        (one.join().unwrap(), two.join().unwrap())
    });
    assert!(!items_a.is_empty() && !items_b.is_empty(), "both took work");
    let all_items: BTreeSet<WorkId> = items_a.iter().chain(&items_b).copied().collect();
    assert_eq!(
        all_items.len(),
        items_a.len() + items_b.len(),
        "an item taken twice"
    );
    assert_eq!(all_items, (1..=2 * N).collect(), "every item taken");
    let all_instances: BTreeSet<&String> = instances_a.iter().chain(&instances_b).collect();
    assert_eq!(
        all_instances.len(),
        instances_a.len() + instances_b.len(),
        "an instance taken twice"
    );
    assert_eq!(all_instances.len(), N as usize, "every instance taken");
}

/// A lease runs out by the database's clock: another worker's claim then takes the work
/// over, and the worker that lapsed writes nothing more, nor renews.
#[test]
fn a_lapsed_lease_is_taken_over_and_its_worker_fenced() {
    let (_database, a, b) = two_handles();
    // Long enough for the calls before it lapses on a busy machine.
    let stale = a.join(Duration::from_millis(1500)).unwrap();
    let mut seed = started("x", 1);
    seed.enqueued.push((2, task("x", 2)));
    a.commit(&[leased(stale, seed)]).unwrap();
    let taker = b.join(Duration::from_secs(60)).unwrap();
    let claim = b.claim(taker, &ClaimFilter::default()).unwrap();
    assert!(
        claim.items.is_empty(),
        "the stale worker holds x: {claim:?}"
    );
    std::thread::sleep(Duration::from_millis(1800));
    let claim = b.claim(taker, &ClaimFilter::default()).unwrap();
    assert_eq!(ids(&claim), vec![1, 2]);
    assert_eq!(claim.instances.len(), 1);
    assert_eq!(
        (claim.instances[0].id.as_str(), claim.instances[0].holding),
        ("x", Holding::Claimed)
    );
    // The stale worker's turn is refused whole.
    let turn = leased(
        stale,
        Commit {
            dequeued: vec![1],
            progress: vec![("p".into(), Some(b"1".to_vec()))],
            ..append("x", 0, 0..1)
        },
    );
    let err = a.commit(std::slice::from_ref(&turn)).unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseExpired { worker } if worker == stale),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(a.history("x").unwrap().is_empty(), "nothing written");
    assert_eq!(a.progress("p").unwrap(), None, "nothing written");
    assert_eq!(a.work_items().unwrap().len(), 2, "nothing written");
    let err = a.renew(stale, Duration::from_secs(60)).unwrap_err();
    assert!(matches!(err, StoreError::LeaseExpired { .. }), "{err:?}");
    // Joined again, it is fenced off what the other took.
    let again = a.join(Duration::from_secs(60)).unwrap();
    assert_ne!(again, stale, "a worker id is never given twice");
    let err = a
        .commit(&[leased(again, append("x", 0, 0..1))])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Fenced { worker, what, holder }
            if *worker == again && what == "instance `x`" && *holder == taker),
        "{err:?}"
    );
    let err = a
        .commit(&[leased(
            again,
            Commit {
                dequeued: vec![2],
                ..Commit::default()
            },
        )])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Fenced { what, holder, .. }
            if what == "work item 2" && *holder == taker),
        "{err:?}"
    );
    assert!(a.history("x").unwrap().is_empty(), "nothing written");
    // The worker that took it over writes.
    b.commit(&[leased(
        taker,
        Commit {
            dequeued: vec![1, 2],
            ..append("x", 0, 0..1)
        },
    )])
    .unwrap();
    assert_eq!(b.history("x").unwrap(), vec![event(0)]);
    // A worker renewed in time keeps its lease past the first term.
    let kept = a.join(Duration::from_millis(1500)).unwrap();
    a.renew(kept, Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_millis(1800));
    a.commit(&[leased(kept, started("y", 3))]).unwrap();
}

/// A worker that leaves releases what it holds at once.
#[test]
fn a_worker_that_leaves_releases_its_work_at_once() {
    let (_database, a, b) = two_handles();
    let leaving = a.join(Duration::from_secs(60)).unwrap();
    a.commit(&[leased(leaving, started("z", 1))]).unwrap();
    let other = b.join(Duration::from_secs(60)).unwrap();
    assert!(b.claim(other, &ClaimFilter::default()).unwrap().is_empty());
    a.leave(leaving).unwrap();
    a.leave(leaving).unwrap();
    let claim = b.claim(other, &ClaimFilter::default()).unwrap();
    assert_eq!(ids(&claim), vec![1]);
    assert_eq!(claim.instances[0].holding, Holding::Claimed);
    let err = a.claim(leaving, &ClaimFilter::default()).unwrap_err();
    assert!(matches!(err, StoreError::LeaseExpired { .. }), "{err:?}");
}

/// A worker holds an instance until it finishes: the finished ones are stored unheld, so
/// leaving (or a lapsed lease) releases the live instances, not every one the worker ran.
#[test]
fn a_finished_instance_is_stored_unheld() {
    let (database, a, _b) = two_handles();
    let worker = a.join(Duration::from_secs(60)).unwrap();
    a.commit(&[
        leased(worker, started("done", 1)),
        leased(worker, started("live", 2)),
    ])
    .unwrap();
    let mut finished = record("flow", 1);
    finished.status = Status::Completed {
        output: b"1".to_vec(),
    };
    let finish = Commit {
        instances: vec![("done".into(), finished)],
        ..Commit::default()
    };
    a.commit(&[leased(worker, finish)]).unwrap();
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    let held: Vec<(Vec<u8>, Option<i64>)> = sql
        .query("SELECT id, held_by FROM durable.instances ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let worker = i64::try_from(worker).unwrap();
    assert_eq!(
        held,
        vec![(b"done".to_vec(), None), (b"live".to_vec(), Some(worker))]
    );
}

/// Items a commit leaves unclaimed are for any worker; the others stay with the worker
/// that enqueued them, and so do the instances it wrote.
#[test]
fn unclaimed_items_are_for_others_and_the_rest_stay() {
    let (_database, a, b) = two_handles();
    a.commit(&[Commit {
        instances: vec![("w".into(), record("flow", 1))],
        ..Commit::default()
    }])
    .unwrap();
    let sender = a.join(Duration::from_secs(60)).unwrap();
    let mut send = started("v", 9);
    send.enqueued
        .extend([(10, task("v", 10)), (11, work("w", 11))]);
    a.commit(&[Commit {
        lease: Some(CommitLease {
            worker: sender,
            unclaimed: vec![11],
            released: Vec::new(),
        }),
        ..send
    }])
    .unwrap();
    let other = b.join(Duration::from_secs(60)).unwrap();
    let claim = b.claim(other, &ClaimFilter::default()).unwrap();
    assert_eq!(ids(&claim), vec![11], "only the unclaimed message");
    let holdings: Vec<(&str, Holding)> = claim
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i.holding))
        .collect();
    assert_eq!(holdings, vec![("w", Holding::Claimed)]);
    // The sender's own: its instance v (and its items) stay with it.
    let err = b
        .commit(&[leased(other, append("v", 0, 0..1))])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { holder, .. } if holder == sender),
        "{err:?}"
    );
    // An activity filter: a worker without the activity leaves its tasks.
    a.commit(&[Commit {
        enqueued: vec![(12, task("w", 12))],
        ..Commit::default()
    }])
    .unwrap();
    let none = ClaimFilter::default().activities(vec!["ship".into()]);
    assert!(b.claim(other, &none).unwrap().items.is_empty());
    let claim = b.claim(other, &ClaimFilter::default()).unwrap();
    assert_eq!(ids(&claim), vec![12]);
    assert_eq!(claim.instances[0].holding, Holding::Held);
}

/// Items of instances that finished or are gone are taken whatever the filter; stalled
/// instances are claimed with no item.
#[test]
fn finished_and_stalled_instances_are_claimed_as_the_reference_does() {
    let (_database, a, _b) = two_handles();
    let mut stalled = record("flow", 5);
    stalled.status = Status::Stalled {
        failure: Failure {
            kind: FailureKind::Panicked,
            message: "no code".into(),
        },
    };
    let mut done = record("flow", 6);
    done.status = Status::Completed {
        output: b"1".to_vec(),
    };
    a.commit(&[Commit {
        instances: vec![("s".into(), stalled), ("done".into(), done)],
        enqueued: vec![(1, work("done", 1)), (2, work("gone", 2))],
        ..Commit::default()
    }])
    .unwrap();
    let worker = a.join(Duration::from_secs(60)).unwrap();
    let filter = ClaimFilter::default()
        .orchestrators(vec!["other".into()])
        .activities(vec![]);
    let claim = a.claim(worker, &filter).unwrap();
    assert_eq!(ids(&claim), vec![1, 2]);
    assert!(claim.instances.is_empty(), "{claim:?}");
    let claim = a.claim(worker, &ClaimFilter::default()).unwrap();
    assert!(claim.items.is_empty());
    let holdings: Vec<(&str, Holding)> = claim
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i.holding))
        .collect();
    assert_eq!(holdings, vec![("s", Holding::Claimed)]);
}

/// The history fence holds on an empty history too: an append starts at index 0.
#[test]
fn an_append_to_an_empty_history_starts_at_zero() {
    let store = super::fresh_store();
    let err = store.commit(&[append("e", 3, 3..4)]).unwrap_err();
    assert!(
        matches!(&err, StoreError::HistoryConflict { instance, first: 3, stored: 0 }
            if instance == "e"),
        "{err:?}"
    );
    assert!(store.history("e").unwrap().is_empty());
    store.commit(&[append("e", 0, 0..1)]).unwrap();
    // Emptied and started again in one call: again at 0.
    let restart = |first| Commit {
        histories_removed: vec![("e".into(), 1)],
        history: vec![HistoryAppend {
            instance: "e".into(),
            first,
            events: vec![event(7)],
        }],
        ..Commit::default()
    };
    let err = store.commit(&[restart(1)]).unwrap_err();
    assert!(matches!(err, StoreError::HistoryConflict { .. }), "{err:?}");
    store.commit(&[restart(0)]).unwrap();
    assert_eq!(store.history("e").unwrap(), vec![event(7)]);
}

/// Work ids reserved through two handles at once never overlap, and lie above every
/// stored id.
#[test]
fn reserved_work_ids_are_disjoint_and_above_the_stored_ones() {
    let (_database, a, b) = two_handles();
    a.commit(&[started("r", 500)]).unwrap();
    let reserve = |store: &PostgresStore| {
        (0..50)
            .map(|n| {
                let count = 1 + n % 7;
                (store.reserve_work_ids(count).unwrap(), count)
            })
            .collect::<Vec<_>>()
    };
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(|| reserve(&a));
        let two = scope.spawn(|| reserve(&b));
        (one.join().unwrap(), two.join().unwrap())
    });
    let mut ranges: Vec<(WorkId, WorkId)> = one
        .into_iter()
        .chain(two)
        .map(|(first, count)| (first, first + count))
        .collect();
    ranges.sort();
    assert!(ranges[0].0 > 500, "{ranges:?}");
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping: {pair:?}");
    }
    // An id written above the counter (by a writer that did not reserve it) is skipped.
    a.commit(&[started("q", 10_000)]).unwrap();
    assert!(a.reserve_work_ids(1).unwrap() > 10_000);
}

/// A waiting worker wakes as soon as another handle's commit leaves work unheld (or a
/// worker leaves), and after the timeout otherwise.
#[test]
fn waiting_for_work_wakes_on_another_handles_commit() {
    let (_database, a, b) = two_handles();
    let worker = b.join(Duration::from_secs(60)).unwrap();
    let started_at = Instant::now();
    b.wait_for_work(Duration::from_millis(300)).unwrap();
    assert!(started_at.elapsed() >= Duration::from_millis(300));
    let sender = a.join(Duration::from_secs(60)).unwrap();
    for (n, commit) in [
        // No lease: nothing held.
        started("n1", 1),
        // Unclaimed by its worker.
        Commit {
            lease: Some(CommitLease {
                worker: sender,
                unclaimed: vec![2],
                released: Vec::new(),
            }),
            ..started("n2", 2)
        },
    ]
    .into_iter()
    .enumerate()
    {
        let committed = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                b.wait_for_work(Duration::from_secs(10)).unwrap();
                Instant::now()
            });
            std::thread::sleep(Duration::from_millis(200));
            a.commit(std::slice::from_ref(&commit)).unwrap();
            let committed = Instant::now();
            let woke = waiter.join().unwrap();
            woke.saturating_duration_since(committed)
        });
        println!("woke {committed:?} after commit {n}");
        assert!(committed < Duration::from_millis(150), "{n}: {committed:?}");
    }
    // A commit whose items its worker keeps wakes no one.
    let started_at = Instant::now();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| b.wait_for_work(Duration::from_millis(600)).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        a.commit(&[leased(sender, started("n3", 3))]).unwrap();
        waiter.join().unwrap();
    });
    assert!(started_at.elapsed() >= Duration::from_millis(600));
    // A worker leaving wakes the waiters: its work is for others now.
    let woke = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            b.wait_for_work(Duration::from_secs(10)).unwrap();
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(200));
        a.leave(sender).unwrap();
        let left = Instant::now();
        waiter.join().unwrap().saturating_duration_since(left)
    });
    assert!(woke < Duration::from_millis(150), "{woke:?}");
    b.leave(worker).unwrap();
}

/// The DDL of schema version 1 as first released (before the listing indexes).
const V1: &str = "
CREATE SCHEMA durable;
CREATE TABLE durable.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE durable.instances (
    id bytea PRIMARY KEY, orchestrator text NOT NULL, status text NOT NULL,
    history_len bigint NOT NULL, created_ms bigint NOT NULL, updated_ms bigint NOT NULL,
    input json, output json, custom_status json, record bytea NOT NULL
);
CREATE TABLE durable.history (
    instance_id bytea NOT NULL, idx bigint NOT NULL, kind text NOT NULL, payload json,
    record bytea NOT NULL, PRIMARY KEY (instance_id, idx)
);
CREATE TABLE durable.work (
    id bigint PRIMARY KEY, kind text NOT NULL, instance_id bytea NOT NULL, payload json,
    record bytea NOT NULL
);
CREATE TABLE durable.progress (key bytea PRIMARY KEY, json json, value bytea NOT NULL);
INSERT INTO durable.meta VALUES ('schema_version', '1');
";

/// A database of schema version 1 is migrated on open, and keeps its data.
#[test]
fn a_version_1_database_is_migrated_and_keeps_its_data() {
    let database = TestServer::shared().database();
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    sql.batch_execute(V1).unwrap();
    let old = record("flow", 1);
    let item = work("old", 1);
    let first: Event = event(0);
    sql.execute(
        "INSERT INTO durable.instances VALUES ($1, 'flow', 'pending', 1, 1, 1, NULL, NULL, \
         NULL, $2)",
        &[&b"old".as_slice(), &postcard::to_allocvec(&old).unwrap()],
    )
    .unwrap();
    sql.execute(
        "INSERT INTO durable.history VALUES ($1, 0, 'ActivityCompleted', NULL, $2)",
        &[&b"old".as_slice(), &postcard::to_allocvec(&first).unwrap()],
    )
    .unwrap();
    sql.execute(
        "INSERT INTO durable.work VALUES (41, 'message', $1, NULL, $2)",
        &[&b"old".as_slice(), &postcard::to_allocvec(&item).unwrap()],
    )
    .unwrap();
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(
        super::stored_schema_version(&mut sql),
        SCHEMA_VERSION.to_string()
    );
    let indexes: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'durable' AND indexname IN \
             ('instances_by_status', 'instances_by_orchestrator', 'instances_by_created')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexes, 3, "the listing indexes are created");
    assert_eq!(store.instance("old").unwrap(), Some(old));
    assert_eq!(store.history("old").unwrap(), vec![first]);
    assert_eq!(store.work_items().unwrap(), vec![(41, item)]);
    assert!(store.reserve_work_ids(3).unwrap() > 41);
    let worker = store.join(Duration::from_secs(60)).unwrap();
    let claim = store.claim(worker, &ClaimFilter::default()).unwrap();
    assert_eq!(ids(&claim), vec![41]);
    store
        .commit(&[leased(
            worker,
            Commit {
                dequeued: vec![41],
                ..append("old", 1, 1..2)
            },
        )])
        .unwrap();
    drop(store);
    // Opened again: version 2 as it is.
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(store.history("old").unwrap().len(), 2);
}

/// The same calls on a `MemoryStore` (the reference semantics, `lease::local`) and on a
/// `PostgresStore` answer the same: claims under filters and limits, fenced and expired
/// commits, a batch of two workers' commits, leaving.
#[test]
fn claims_and_fences_answer_as_the_reference_does() {
    let memory = durable_store::MemoryStore::new();
    let postgres = super::fresh_store();
    let stores: [&dyn Store; 2] = [&memory, &postgres];
    let both = |why: &str, call: &dyn Fn(&dyn Store) -> String| {
        let answers: Vec<String> = stores.iter().map(|store| call(*store)).collect();
        assert_eq!(answers[1], answers[0], "{why}");
        answers[0].clone()
    };
    let commit =
        |commits: Vec<Commit>| move |store: &dyn Store| format!("{:?}", store.commit(&commits));
    let timer = |instance: &str, seq: u64| WorkItem::Timer {
        instance: instance.into(),
        incarnation: 1,
        generation: 0,
        seq,
        fire_at_ms: 7,
    };
    let with = |orchestrator: &str, created: u64, status: Option<Status>| {
        let mut record = record(orchestrator, created);
        if let Some(status) = status {
            record.status = status;
        }
        record
    };
    let shipped = |instance: &str, seq| match task(instance, seq) {
        WorkItem::Activity(mut task) => {
            task.activity = "ship".into();
            WorkItem::Activity(task)
        }
        _ => unreachable!(),
    };
    let stalled = Status::Stalled {
        failure: Failure {
            kind: FailureKind::Panicked,
            message: "no code".into(),
        },
    };
    both(
        "seed",
        &commit(vec![Commit {
            instances: vec![
                ("a".into(), with("flow", 1, None)),
                ("b".into(), with("flow", 2, None)),
                ("c".into(), with("other", 3, None)),
                ("d".into(), with("flow", 4, Some(stalled))),
                (
                    "e".into(),
                    with("flow", 5, Some(Status::Completed { output: vec![] })),
                ),
                ("f".into(), with("flow", 6, None)),
                ("g".into(), with("flow", 0, None)),
            ],
            enqueued: vec![
                (1, work("a", 1)),
                (2, task("a", 2)),
                (3, work("b", 3)),
                (4, timer("c", 4)),
                (5, shipped("c", 5)),
                (6, work("e", 6)),
                (7, work("gone", 7)),
                (8, work("f", 8)),
                (9, task("b", 9)),
                (10, work("a", 10)),
                (13, shipped("g", 13)),
            ],
            ..Commit::default()
        }]),
    );
    let join = |lease| move |store: &dyn Store| format!("{:?}", store.join(lease));
    both("join 1", &join(Duration::from_secs(60)));
    both("join 2", &join(Duration::from_secs(60)));
    let claim = |worker: WorkerId, filter: ClaimFilter| {
        move |store: &dyn Store| format!("{:#?}", store.claim(worker, &filter))
    };
    let flow = ClaimFilter::default()
        .orchestrators(vec!["flow".into()])
        .activities(vec!["charge".into()]);
    both("a narrow claim", &claim(1, flow.clone().limits(1, 3)));
    both(
        "a wider one",
        &claim(2, ClaimFilter::default().limits(2, 100)),
    );
    both("nothing left", &claim(1, flow.clone()));
    let lease = |worker, unclaimed: Vec<WorkId>| {
        Some(CommitLease {
            worker,
            unclaimed,
            released: Vec::new(),
        })
    };
    both(
        "a turn of worker 1",
        &commit(vec![Commit {
            lease: lease(1, vec![11]),
            dequeued: vec![1, 10],
            enqueued: vec![(11, work("b", 11)), (12, task("a", 12))],
            ..append("a", 0, 0..1)
        }]),
    );
    both("the unclaimed message", &claim(2, ClaimFilter::default()));
    both("its own task is not", &claim(1, ClaimFilter::default()));
    both(
        "fenced off an instance",
        &commit(vec![Commit {
            lease: lease(2, vec![]),
            ..append("a", 1, 1..2)
        }]),
    );
    both(
        "fenced off an item",
        &commit(vec![Commit {
            lease: lease(1, vec![]),
            dequeued: vec![3],
            ..Commit::default()
        }]),
    );
    both(
        "a finished instance is anyone's",
        &commit(vec![Commit {
            lease: lease(2, vec![]),
            dequeued: vec![6],
            ..append("e", 0, 0..1)
        }]),
    );
    both(
        "two workers in one batch, on an absent instance",
        &commit(vec![
            Commit {
                lease: lease(1, vec![]),
                ..append("h", 0, 0..1)
            },
            Commit {
                lease: lease(2, vec![]),
                ..append("h", 1, 1..2)
            },
        ]),
    );
    both(
        "two workers in one batch, on a live instance",
        &commit(vec![
            Commit {
                lease: lease(1, vec![]),
                instances: vec![("k".into(), with("flow", 9, None))],
                ..Commit::default()
            },
            Commit {
                lease: lease(2, vec![]),
                ..append("a", 1, 1..2)
            },
        ]),
    );
    both(
        "the lease fence comes first, then the history's",
        &commit(vec![Commit {
            lease: lease(2, vec![]),
            ..append("a", 5, 5..6)
        }]),
    );
    both("leave", &|store: &dyn Store| {
        format!("{:?}", store.leave(1))
    });
    both("its work is taken over", &claim(2, ClaimFilter::default()));
    both("join 3", &join(Duration::from_millis(200)));
    std::thread::sleep(Duration::from_millis(300));
    both(
        "an expired lease",
        &commit(vec![Commit {
            lease: lease(3, vec![]),
            ..Commit::default()
        }]),
    );
    both("an expired claim", &claim(3, ClaimFilter::default()));
    both("a left worker", &claim(1, ClaimFilter::default()));
    both("the end", &|store: &dyn Store| {
        format!("{:?}", store.work_items())
    });
}

/// A TCP proxy to the shared server that counts the round trips of the connections
/// through it: the `ReadyForQuery` messages the server sends, one at the end of each.
fn proxy_counting_round_trips() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let server = TestServer::shared().port();
    let counted = count.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let upstream = TcpStream::connect(("127.0.0.1", server)).unwrap();
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
            });
            let (mut from_server, mut to_client, counted) = (upstream, client, counted.clone());
            std::thread::spawn(move || {
                // Every message the server sends: a type byte, then its length (itself
                // included), big-endian.
                let (mut buf, mut pending) = (vec![0; 1 << 16], Vec::new());
                while let Ok(n) = from_server.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    // Counted before the client sees them.
                    pending.extend_from_slice(&buf[..n]);
                    while pending.len() >= 5 {
                        let len = u32::from_be_bytes(pending[1..5].try_into().unwrap()) as usize;
                        if pending.len() < 1 + len {
                            break;
                        }
                        if pending[0] == b'Z' {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        pending.drain(..1 + len);
                    }
                    if to_client.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, count)
}

/// A commit under a lease costs the round trips of one without: `BEGIN`, the statement,
/// `COMMIT`; one more when it removes a history.
#[test]
fn a_leased_commit_costs_three_round_trips() {
    use std::sync::atomic::Ordering;
    let database = TestServer::shared().database();
    let (port, count) = proxy_counting_round_trips();
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{port}/{}",
        TestServer::PASSWORD,
        database.name()
    );
    let store = PostgresStore::open(&url).unwrap();
    let worker = store.join(Duration::from_secs(60)).unwrap();
    let turn = |n: u32| {
        let mut commit = leased(worker, append("t", n, n..n + 1));
        commit.instances = vec![("t".into(), record("flow", 1))];
        commit.dequeued = vec![u64::from(n)];
        commit.enqueued = vec![(u64::from(n) + 1, work("t", n + 1))];
        commit
    };
    // Each committing connection prepares the statements on first use, and which of the
    // store's connections serves a commit varies: the fewest round trips of several
    // commits is what one costs.
    let fewest = |f: &mut dyn FnMut(u32)| {
        (0..8)
            .map(|n| {
                let before = count.load(Ordering::SeqCst);
                f(n);
                count.load(Ordering::SeqCst) - before
            })
            .min()
            .unwrap()
    };
    let mut next = 0;
    let per_commit = fewest(&mut |_| {
        store.commit(&[turn(next)]).unwrap();
        next += 1;
    });
    println!("round trips per leased commit: {per_commit}");
    assert_eq!(per_commit, 3);
    // A group commit of many turns costs the same.
    let per_group = fewest(&mut |_| {
        let group: Vec<Commit> = (next..next + 50).map(turn).collect();
        store.commit(&group).unwrap();
        next += 50;
    });
    assert_eq!(per_group, 3);
    let mut restart = leased(worker, append("t", 0, 0..1));
    restart.histories_removed = vec![("t".into(), next)];
    store.commit(std::slice::from_ref(&restart)).unwrap();
    let per_restart = fewest(&mut |_| {
        restart.histories_removed = vec![("t".into(), 1)];
        store.commit(std::slice::from_ref(&restart)).unwrap();
    });
    assert_eq!(per_restart, 4);
    // A claim: BEGIN, the expired leases and the worker's, the unheld items, the
    // instances they are for, the stalled instances, taking the instances, the items,
    // COMMIT. Each reading connection prepares the statements on first use: the fewest
    // of several claims is what one costs.
    let per_claim = (0..12)
        .map(|n| {
            store.commit(&[started(&format!("c{n}"), 100 + n)]).unwrap();
            let before = count.load(Ordering::SeqCst);
            let claim = store.claim(worker, &ClaimFilter::default()).unwrap();
            assert_eq!(ids(&claim), vec![100 + n]);
            count.load(Ordering::SeqCst) - before
        })
        .min()
        .unwrap();
    println!("round trips per claim: {per_claim}");
    assert_eq!(per_claim, 8);
}

/// A claim whose `COMMIT` is lost in flight may have taken its work: the store releases
/// it and claims again on a new connection, so the worker does not hold work it never
/// learnt of.
#[test]
fn a_claim_lost_in_flight_is_released_and_made_again() {
    let database = TestServer::shared().database();
    let (port, armed) = super::proxy_cutting_a_commit();
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{port}/{}",
        TestServer::PASSWORD,
        database.name()
    );
    let store = PostgresStore::open(&url).unwrap();
    store.commit(&[started("l", 1)]).unwrap();
    let worker = store.join(Duration::from_secs(60)).unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let claim = store.claim(worker, &ClaimFilter::default()).unwrap();
    assert!(
        !armed.load(std::sync::atomic::Ordering::SeqCst),
        "a COMMIT was cut"
    );
    assert_eq!(ids(&claim), vec![1]);
    assert_eq!(claim.instances[0].holding, Holding::Claimed);
}

/// A worker committing turns as fast as it can while its lease runs out, and another
/// taking its instance over: every turn of the first either lands before the takeover or
/// is refused, so the second finds the history as the first's successful turns left it
/// and appends after it.
#[test]
fn a_takeover_and_a_stale_worker_committing_serialize() {
    let (_database, a, b) = two_handles();
    for round in 0..3 {
        let id = format!("race{round}");
        let stale = a.join(Duration::from_millis(1000)).unwrap();
        a.commit(&[leased(stale, started(&id, 1 + round))]).unwrap();
        let taker = b.join(Duration::from_secs(60)).unwrap();
        let (landed, taken_at) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let mut landed = 0;
                loop {
                    let turn = leased(stale, append(&id, landed, landed..landed + 1));
                    match a.commit(&[turn]) {
                        Ok(()) => landed += 1,
                        // Refused: its lease ran out, or (checked first) the taker
                        // appended already.
                        Err(
                            StoreError::LeaseExpired { .. } | StoreError::HistoryConflict { .. },
                        ) => {
                            return landed;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
            let claim = loop {
                let claim = b.claim(taker, &ClaimFilter::default()).unwrap();
                if !claim.items.is_empty() {
                    break claim;
                }
            };
            assert_eq!(claim.instances[0].id, id);
            assert_eq!(claim.instances[0].holding, Holding::Claimed);
            // Taken over: what the stale worker landed is all there is, while it may still
            // be trying.
            let taken_at = b.history(&id).unwrap().len() as u32;
            let mut turn = leased(taker, append(&id, taken_at, taken_at..taken_at + 1));
            turn.dequeued = ids(&claim);
            b.commit(&[turn]).unwrap();
            (writer.join().unwrap(), taken_at)
        });
        assert_eq!(landed, taken_at, "round {round}");
        assert_eq!(b.history(&id).unwrap().len() as u32, landed + 1);
        b.leave(taker).unwrap();
    }
}
