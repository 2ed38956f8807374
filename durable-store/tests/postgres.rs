//! `PostgresStore` on a throwaway PostgreSQL server: the conformance suite, the history
//! fence, payloads `psql` can read, and what each bad connection or schema tells the user.

use std::path::Path;

#[path = "postgres/leases.rs"]
mod leases;
#[path = "postgres/schema_v3.rs"]
mod schema_v3;
#[path = "postgres/schema_v4.rs"]
mod schema_v4;

use durable_store::{
    Commit, Event, HistoryAppend, InstanceRecord, KeyKind, PostgresStore, SCHEMA_VERSION,
    ServerProblem, Status, Store, StoreError, TestServer, WorkItem, conformance,
};

/// The schema version a database records (`durable.meta`), as migrated by the last open.
fn stored_schema_version(sql: &mut postgres::Client) -> String {
    sql.query_one(
        "SELECT value FROM durable.meta WHERE key = 'schema_version'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// A store on a new, empty database of the shared server.
fn fresh_store() -> PostgresStore {
    let database = TestServer::shared().database();
    PostgresStore::open(database.url())
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", database.url()))
}

#[test]
fn postgres_store_conforms() {
    conformance::run(fresh_store);
}

#[test]
fn postgres_store_survives_reopen() {
    let database = TestServer::shared().database();
    // The suite names a directory; the database is the store's place here.
    conformance::run_reopen(Path::new("unused"), |_| {
        PostgresStore::open(database.url()).unwrap()
    });
}

fn event(n: u32) -> Event {
    Event::ActivityCompleted {
        seq: u64::from(n),
        output: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

fn append(id: &str, first: u32, range: std::ops::Range<u32>) -> Commit {
    Commit {
        history: vec![HistoryAppend {
            instance: id.to_owned(),
            first,
            events: range.map(event).collect(),
        }],
        ..Commit::default()
    }
}

fn record(history_len: u32) -> InstanceRecord {
    InstanceRecord {
        history_len,
        ..InstanceRecord::pending("flow".into(), 1, b"{\"order\":7}".to_vec(), 1, 1, None)
    }
}

/// An append that does not start where the stored history ends is a stale writer's: the
/// whole call is refused, typed, and writes nothing.
#[test]
fn an_append_not_at_the_stored_length_is_refused_and_writes_nothing() {
    let store = fresh_store();
    store.commit(&[append("x", 0, 0..3)]).unwrap();
    let with_record = |mut commit: Commit| {
        commit.instances.push(("x".into(), record(9)));
        commit.progress.push(("p".into(), Some(b"1".to_vec())));
        commit
    };
    for (first, why) in [(2, "overlapping"), (5, "past the end")] {
        let err = store
            .commit(&[Commit::default(), with_record(append("x", first, 0..2))])
            .unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::HistoryConflict { instance, first: f, stored: 3 }
                    if instance == "x" && *f == first
            ),
            "{why}: {err:?}"
        );
        assert!(err.is_permanent());
        assert!(err.to_string().contains("another writer"), "{err}");
        assert_eq!(
            store.history("x").unwrap(),
            (0..3).map(event).collect::<Vec<_>>()
        );
        assert_eq!(store.instance("x").unwrap(), None, "{why}: nothing written");
        assert_eq!(store.progress("p").unwrap(), None, "{why}: nothing written");
    }
    // Within one call, the second append must start where the first ends.
    let err = store
        .commit(&[append("x", 3, 3..4), append("x", 3, 4..5)])
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::HistoryConflict {
                first: 3,
                stored: 4,
                ..
            }
        ),
        "{err:?}"
    );
    store
        .commit(&[append("x", 3, 3..4), append("x", 4, 4..5)])
        .unwrap();
    assert_eq!(
        store.history("x").unwrap(),
        (0..5).map(event).collect::<Vec<_>>()
    );
    // A refused call that also removes a history (written before the fence is checked)
    // keeps that history.
    store.commit(&[append("y", 0, 0..2)]).unwrap();
    let removal = Commit {
        histories_removed: vec![("y".into(), 2)],
        ..Commit::default()
    };
    let err = store.commit(&[removal, append("x", 9, 9..10)]).unwrap_err();
    assert!(matches!(err, StoreError::HistoryConflict { .. }), "{err:?}");
    assert_eq!(store.history("y").unwrap(), vec![event(0), event(1)]);
}

/// Two handles (as two processes would) that both read a history of 3 events: the first
/// to commit wins, the second is refused.
#[test]
fn the_second_of_two_writers_at_one_length_is_refused() {
    let database = TestServer::shared().database();
    let first = PostgresStore::open(database.url()).unwrap();
    let second = PostgresStore::open(database.url()).unwrap();
    first.commit(&[append("x", 0, 0..3)]).unwrap();
    first.commit(&[append("x", 3, 3..4)]).unwrap();
    let err = second.commit(&[append("x", 3, 3..5)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::HistoryConflict {
                first: 3,
                stored: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(second.history("x").unwrap().len(), 4);
}

/// User payloads are JSON in `json` columns, so SQL (and `psql`) reads them.
#[test]
fn payloads_are_readable_json_in_sql() {
    let database = TestServer::shared().database();
    let store = PostgresStore::open(database.url()).unwrap();
    let mut record = record(1);
    record.status = Status::Completed {
        output: b"{\"total\":42}".to_vec(),
    };
    store
        .commit(&[Commit {
            instances: vec![("order-1".into(), record)],
            history: vec![HistoryAppend {
                instance: "order-1".into(),
                first: 0,
                events: vec![event(5)],
            }],
            enqueued: vec![(
                1,
                WorkItem::Message {
                    instance: "order-1".into(),
                    incarnation: 1,
                    generation: None,
                    event: Event::EventRaised {
                        name: "approve".into(),
                        payload: b"\"yes\"".to_vec(),
                    },
                },
            )],
            // Not JSON: kept as bytes, its JSON column NULL.
            progress: vec![("p".into(), Some(vec![0, 159, 1]))],
            ..Commit::default()
        }])
        .unwrap();
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    let row = sql
        .query_one(
            "SELECT convert_from(id, 'UTF8'), status, input->>'order', output->>'total' \
             FROM durable.instances",
            &[],
        )
        .unwrap();
    let (id, status, input, output): (String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (
            id.as_str(),
            status.as_str(),
            input.as_str(),
            output.as_str()
        ),
        ("order-1", "completed", "7", "42")
    );
    let row = sql
        .query_one("SELECT kind, payload->>'n' FROM durable.history", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("ActivityCompleted".into(), "5".into())
    );
    let row = sql
        .query_one("SELECT id, kind, payload #>> '{}' FROM durable.work", &[])
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(
        (row.get::<_, String>(1), row.get::<_, String>(2)),
        ("message".into(), "yes".into())
    );
    let row = sql
        .query_one("SELECT json IS NULL, value FROM durable.progress", &[])
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![0, 159, 1]);
}

fn server_problem(result: Result<PostgresStore, StoreError>) -> (ServerProblem, String) {
    match result {
        Err(StoreError::Server {
            problem,
            server,
            detail,
            ..
        }) => {
            assert!(!server.contains(TestServer::PASSWORD), "{server}");
            let err = StoreError::Server {
                server,
                problem,
                detail,
                source: None,
            };
            (problem, err.to_string())
        }
        other => panic!("expected StoreError::Server, got {other:?}"),
    }
}

#[test]
fn an_unreachable_server_is_reported_as_such() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://durable:secret@127.0.0.1:{port}/orders");
    let err = PostgresStore::open(&url).unwrap_err();
    assert!(!err.is_permanent(), "a server may come back: {err:?}");
    let (problem, message) = server_problem(Err(err));
    assert_eq!(problem, ServerProblem::Unreachable);
    assert!(message.contains("cannot reach"), "{message}");
    assert!(
        message.contains(&format!("durable@127.0.0.1:{port}/orders")),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
}

#[test]
fn a_wrong_password_is_reported_as_such() {
    let server = TestServer::shared();
    let url = server.tcp_url("wrong-password", "postgres");
    let (problem, message) = server_problem(PostgresStore::open(&url));
    assert_eq!(problem, ServerProblem::Authentication);
    assert!(message.contains("user name and password"), "{message}");
    assert!(!message.contains("wrong-password"), "{message}");
    // The right password opens it.
    PostgresStore::open(&server.tcp_url(TestServer::PASSWORD, "postgres")).unwrap();
}

#[test]
fn a_missing_database_is_reported_as_such() {
    let url = TestServer::shared().url("no_such_database");
    let (problem, message) = server_problem(PostgresStore::open(&url));
    assert_eq!(problem, ServerProblem::NoDatabase);
    assert!(message.contains("no_such_database"), "{message}");
    assert!(message.contains("createdb"), "{message}");
}

#[test]
fn a_missing_permission_is_reported_as_such() {
    let database = TestServer::shared().database();
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    sql.batch_execute(&format!(
        "CREATE ROLE reader_{0} LOGIN; REVOKE CREATE ON DATABASE {0} FROM PUBLIC",
        database.name()
    ))
    .unwrap();
    let url = format!("{} user=reader_{}", database.url(), database.name());
    let (problem, message) = server_problem(PostgresStore::open(&url));
    assert_eq!(problem, ServerProblem::Permission);
    assert!(message.contains("grant"), "{message}");
}

#[test]
fn a_schema_of_a_newer_version_is_refused() {
    let database = TestServer::shared().database();
    drop(PostgresStore::open(database.url()).unwrap());
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    sql.execute(
        "UPDATE durable.meta SET value = $1 WHERE key = 'schema_version'",
        &[&(SCHEMA_VERSION + 1).to_string()],
    )
    .unwrap();
    let err = PostgresStore::open(database.url()).unwrap_err();
    assert!(
        matches!(err, StoreError::OtherSchema { found, current: SCHEMA_VERSION, .. } if found == SCHEMA_VERSION + 1),
        "{err:?}"
    );
    assert!(err.is_permanent());
    let message = err.to_string();
    assert!(message.contains("newer durable"), "{message}");
    assert!(message.contains(database.name()), "{message}");
}

#[test]
fn a_connection_string_that_does_not_parse_says_what_to_write() {
    let err = PostgresStore::open("postgres://host:notaport/db").unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("postgres://user:password@host:port/database"),
        "{err}"
    );
}

/// Several handles opening one new database at once create the schema once.
#[test]
fn handles_opening_a_new_database_at_once_share_one_schema() {
    let database = TestServer::shared().database();
    let stores: Vec<PostgresStore> = std::thread::scope(|scope| {
        let opens: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresStore::open(database.url())))
            .collect();
        opens
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    stores[0].commit(&[append("x", 0, 0..1)]).unwrap();
    assert_eq!(stores[3].history("x").unwrap(), vec![event(0)]);
}

/// Connections the server closed (a restart, `pg_terminate_backend`, an idle timeout) are
/// opened again: reads and commits go on without an error.
#[test]
fn connections_the_server_closed_are_opened_again() {
    let database = TestServer::shared().database();
    let store = PostgresStore::open(database.url()).unwrap();
    store.commit(&[append("x", 0, 0..1)]).unwrap();
    assert_eq!(store.history("x").unwrap().len(), 1);
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    let closed = sql
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database.name()],
        )
        .unwrap();
    assert!(closed.len() >= 2, "the store's connections were closed");
    store.commit(&[append("x", 1, 1..2)]).unwrap();
    assert_eq!(store.history("x").unwrap(), vec![event(0), event(1)]);
}

/// An id PostgreSQL's index cannot hold (over 2,704 bytes that do not compress) is
/// refused as the key it is, and the call writes nothing; long ids that compress are kept,
/// as the conformance suite checks.
#[test]
fn an_id_too_long_for_the_index_is_refused_as_invalid() {
    let store = fresh_store();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let id: String = (0..3_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    let calls = [
        (
            KeyKind::InstanceId,
            Commit {
                instances: vec![(id.clone(), record(0))],
                ..Commit::default()
            },
        ),
        (KeyKind::InstanceId, append(&id, 0, 0..1)),
        (
            KeyKind::ProgressKey,
            Commit {
                progress: vec![(id.clone(), Some(vec![1]))],
                ..Commit::default()
            },
        ),
    ];
    for (kind, commit) in calls {
        let good = Commit {
            progress: vec![("good".into(), Some(vec![1]))],
            ..Commit::default()
        };
        let err = store.commit(&[good, commit]).unwrap_err();
        match &err {
            StoreError::InvalidKey {
                kind: got,
                key,
                reason,
            } => {
                assert_eq!(*got, kind);
                assert!(id.starts_with(key.trim_end_matches('…')), "{key}");
                assert!(reason.contains("2704"), "{reason}");
            }
            other => panic!("expected InvalidKey, got {other:?}"),
        }
        assert!(err.is_permanent());
        assert_eq!(store.progress("good").unwrap(), None, "nothing written");
    }
}

/// Every read of `a` and `b`, for the instances and progress keys named.
fn same_reads(a: &dyn Store, b: &dyn Store, ids: &[&str], keys: &[&str], why: &str) {
    assert_eq!(a.instances().unwrap(), b.instances().unwrap(), "{why}");
    assert_eq!(a.work_items().unwrap(), b.work_items().unwrap(), "{why}");
    for id in ids {
        assert_eq!(
            a.history(id).unwrap(),
            b.history(id).unwrap(),
            "{why}: {id:?}"
        );
        assert_eq!(
            a.instance(id).unwrap(),
            b.instance(id).unwrap(),
            "{why}: {id:?}"
        );
    }
    for key in keys {
        assert_eq!(
            a.progress(key).unwrap(),
            b.progress(key).unwrap(),
            "{why}: {key:?}"
        );
    }
}

/// Runs each call on a `FjallStore` and on a `PostgresStore`: both answer the same, and
/// read the same after it.
fn same_as_fjall(calls: &[(&str, Vec<Commit>)], ids: &[&str], keys: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let fjall = durable_store::FjallStore::open(dir.path()).unwrap();
    let postgres = fresh_store();
    for (why, commits) in calls {
        let want = fjall.commit(commits).map_err(|e| e.to_string());
        let got = postgres.commit(commits).map_err(|e| e.to_string());
        assert_eq!(got, want, "{why}");
        same_reads(&fjall, &postgres, ids, keys, why);
    }
}

fn work(instance: &str, n: u32) -> WorkItem {
    WorkItem::Message {
        instance: instance.into(),
        incarnation: 1,
        generation: None,
        event: event(n),
    }
}

/// Later commits of one call override earlier ones key by key, whatever the table, as the
/// fjall store's batch does: a record removed and written again, a work item enqueued and
/// acknowledged, a history removed and started again (continue-as-new).
#[test]
fn a_call_applies_its_commits_in_order_as_fjall_does() {
    let removal = |id: &str, len: u32| Commit {
        histories_removed: vec![(id.into(), len)],
        ..Commit::default()
    };
    let calls = vec![
        (
            "seed",
            vec![
                Commit {
                    instances: vec![("a".into(), record(3)), ("b".into(), record(1))],
                    enqueued: vec![(1, work("a", 1)), (2, work("b", 2))],
                    progress: vec![("p".into(), Some(b"1".to_vec()))],
                    ..append("a", 0, 0..3)
                },
                append("b", 0, 0..1),
            ],
        ),
        (
            "a later commit overrides an earlier one's key",
            vec![
                Commit {
                    instances: vec![("a".into(), record(4))],
                    progress: vec![("p".into(), Some(b"2".to_vec()))],
                    enqueued: vec![(3, work("a", 3))],
                    ..Commit::default()
                },
                Commit {
                    instances: vec![("a".into(), record(5))],
                    progress: vec![("p".into(), Some(b"3".to_vec()))],
                    enqueued: vec![(3, work("a", 4))],
                    ..Commit::default()
                },
            ],
        ),
        (
            "removed and created again; created and removed",
            vec![
                Commit {
                    instances_removed: vec!["a".into(), "c".into()],
                    progress: vec![("p".into(), None), ("q".into(), Some(b"x".to_vec()))],
                    ..Commit::default()
                },
                Commit {
                    instances: vec![("a".into(), record(7)), ("c".into(), record(0))],
                    progress: vec![("p".into(), Some(b"4".to_vec())), ("q".into(), None)],
                    ..Commit::default()
                },
                Commit {
                    instances_removed: vec!["c".into()],
                    ..Commit::default()
                },
            ],
        ),
        (
            "enqueued and acknowledged in one call; acknowledged and enqueued again",
            vec![
                Commit {
                    enqueued: vec![(10, work("a", 10))],
                    dequeued: vec![2],
                    ..Commit::default()
                },
                Commit {
                    dequeued: vec![10],
                    enqueued: vec![(2, work("b", 20))],
                    ..Commit::default()
                },
                Commit {
                    // In one commit the acknowledgement comes before the enqueue.
                    dequeued: vec![11],
                    enqueued: vec![(11, work("b", 11))],
                    ..Commit::default()
                },
            ],
        ),
        (
            "appended, removed and started again in one call (continue-as-new)",
            vec![
                append("a", 3, 3..5),
                Commit {
                    histories_removed: vec![("a".into(), 5)],
                    ..append("a", 0, 10..12)
                },
                append("a", 2, 12..13),
                removal("b", 1),
                append("b", 0, 20..21),
                removal("b", 1),
                append("b", 0, 30..32),
            ],
        ),
        ("removed alone", vec![removal("a", 3)]),
    ];
    same_as_fjall(&calls, &["a", "b", "c"], &["p", "q"]);
}

/// Bytes the store only keeps: ids with NUL and other characters `text` refuses, payloads
/// that are not UTF-8 or JSON PostgreSQL's `json` refuses (a lone surrogate escape), an
/// orchestrator name with a NUL, payloads of megabytes.
#[test]
fn odd_and_large_bytes_are_kept_as_fjall_keeps_them() {
    let odd_ids = ["nul\0id", "\u{feff}bom", "é\u{10ffff}", "\\x00"];
    let mut calls = Vec::new();
    for (n, id) in odd_ids.iter().enumerate() {
        let n = n as u32;
        calls.push((
            "an odd id",
            vec![Commit {
                instances: vec![(id.to_string(), record(1))],
                enqueued: vec![(u64::from(n), work(id, n))],
                progress: vec![(id.to_string(), Some(vec![0, 0xff, n as u8]))],
                ..append(id, 0, 0..1)
            }],
        ));
    }
    let payloads: [(&str, Vec<u8>); 6] = [
        ("not UTF-8", vec![0xff, 0xfe, 0]),
        ("a lone high surrogate", br#""\ud800""#.to_vec()),
        ("a lone low surrogate", br#"{"k": ["\udc00"]}"#.to_vec()),
        ("a surrogate key", br#"{"\ud83d": 1}"#.to_vec()),
        ("a NUL escape", br#""a\u0000b""#.to_vec()),
        ("a huge number", b"1e400".to_vec()),
    ];
    for (why, payload) in payloads {
        let mut record = record(1);
        record.input = payload.clone();
        record.status = Status::Completed {
            output: payload.clone(),
        };
        calls.push((
            why,
            vec![Commit {
                instances: vec![("j".into(), record)],
                history: vec![HistoryAppend {
                    instance: "j".into(),
                    first: 0,
                    events: vec![Event::EventRaised {
                        name: "e".into(),
                        payload: payload.clone(),
                    }],
                }],
                histories_removed: vec![("j".into(), 1)],
                progress: vec![("j".into(), Some(payload))],
                ..Commit::default()
            }],
        ));
    }
    let mut named = record(0);
    named.orchestrator = "flow\0with a NUL".into();
    calls.push((
        "an orchestrator name with a NUL",
        vec![Commit {
            instances: vec![("named".into(), named)],
            ..Commit::default()
        }],
    ));
    let big: Vec<u8> = (0..24 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut big_json = b"\"".to_vec();
    big_json.extend(std::iter::repeat_n(b'z', 16 << 20));
    big_json.push(b'"');
    calls.push((
        "payloads of megabytes",
        vec![Commit {
            progress: vec![("big".into(), Some(big.clone()))],
            ..Commit::default()
        }],
    ));
    calls.push((
        "payloads of megabytes",
        vec![Commit {
            history: vec![HistoryAppend {
                instance: "big".into(),
                first: 0,
                events: vec![
                    Event::EventRaised {
                        name: "e".into(),
                        payload: big_json.clone(),
                    },
                    Event::EventRaised {
                        name: "f".into(),
                        payload: big,
                    },
                ],
            }],
            ..Commit::default()
        }],
    ));
    let mut ids = odd_ids.to_vec();
    ids.extend(["j", "named", "big"]);
    let mut keys = odd_ids.to_vec();
    keys.extend(["j", "big"]);
    same_as_fjall(&calls, &ids, &keys);
}

/// Set in a test process that runs one test alone.
const ALONE: &str = "DURABLE_TEST_ALONE";

/// Whether this process runs `test` alone; if not, runs it alone in a new process of this
/// test binary (with the environment variables `env` set) and checks that it passed.
fn alone(test: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("1 passed"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// The number of open file descriptors and of threads of this process.
fn fds_and_threads() -> (usize, usize) {
    let count = |dir: &str| std::fs::read_dir(dir).unwrap().count();
    (count("/proc/self/fd"), count("/proc/self/task"))
}

/// A dropped store closes its connections and ends its threads: opening and dropping 200
/// stores (each having read and written) leaves the process as it was, and the server
/// with no session of theirs. Counted in a process of its own (this test alone), as the
/// other tests open and drop stores meanwhile.
#[test]
fn dropped_stores_leave_no_connection_or_thread() {
    if !alone("dropped_stores_leave_no_connection_or_thread", &[]) {
        return;
    }
    let database = TestServer::shared().database();
    drop(PostgresStore::open(database.url()).unwrap());
    let before = fds_and_threads();
    for n in 0..200 {
        let store = PostgresStore::open(database.url()).unwrap();
        store.commit(&[append("x", n, n..n + 1)]).unwrap();
        assert_eq!(store.history("x").unwrap().len(), n as usize + 1);
        drop(store);
        // The connections are closed when the drop returns.
        assert_eq!(fds_and_threads().0, before.0, "file descriptors");
    }
    // A joined thread leaves the process's list of threads a moment after the join.
    for _ in 0..50 {
        if fds_and_threads() == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(fds_and_threads(), before, "(file descriptors, threads)");
    // The store said goodbye to the server before its drop returned; the server ends
    // the sessions on its own time.
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    let mut sessions = -1;
    for _ in 0..50 {
        sessions = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database.name()],
            )
            .unwrap()
            .get::<_, i64>(0);
        if sessions == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(sessions, 0, "sessions left open on the server");
}

/// A TCP proxy to the shared server that, once armed, forwards the next `COMMIT` a client
/// sends and then cuts that connection without passing the answer on: the server commits,
/// the client never learns it. Returns its port and the switch that arms it.
fn proxy_cutting_a_commit() -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let armed = Arc::new(AtomicBool::new(false));
    let server = TestServer::shared().port();
    let switch = armed.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let upstream = TcpStream::connect(("127.0.0.1", server)).unwrap();
            let cut = Arc::new(AtomicBool::new(false));
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let (armed, cut_here) = (switch.clone(), cut.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0; 1 << 16];
                while let Ok(n) = from_client.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    let commit = buf[..n].windows(7).any(|w| w == b"COMMIT\0");
                    if commit && armed.swap(false, Ordering::SeqCst) {
                        cut_here.store(true, Ordering::SeqCst);
                        let _ = to_server.write_all(&buf[..n]);
                        std::thread::sleep(std::time::Duration::from_millis(500));
                        let _ = from_client.shutdown(Shutdown::Both);
                        let _ = to_server.shutdown(Shutdown::Both);
                        return;
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            let (mut from_server, mut to_client) = (upstream, client);
            std::thread::spawn(move || {
                let mut buf = vec![0; 1 << 16];
                while let Ok(n) = from_server.read(&mut buf) {
                    if n == 0
                        || cut.load(Ordering::SeqCst)
                        || to_client.write_all(&buf[..n]).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, armed)
}

/// A commit whose connection is lost while its `COMMIT` is in flight may have been
/// applied: the store cannot say it failed (the runtime would run the turn again, and
/// apply it twice) nor that it succeeded. It refuses every later write, as `FjallStore`
/// does after a write it cannot vouch for, and says so; reads go on.
#[test]
fn a_commit_lost_in_flight_poisons_the_store() {
    let database = TestServer::shared().database();
    let (port, armed) = proxy_cutting_a_commit();
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{port}/{}",
        TestServer::PASSWORD,
        database.name()
    );
    let store = PostgresStore::open(&url).unwrap();
    store.commit(&[append("x", 0, 0..1)]).unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = store.commit(&[append("x", 1, 1..2)]).unwrap_err();
    // The server did commit it.
    let direct = PostgresStore::open(database.url()).unwrap();
    assert_eq!(direct.history("x").unwrap(), vec![event(0), event(1)]);
    assert!(
        matches!(err, StoreError::Poisoned { .. }) && err.is_permanent(),
        "a commit that may have been applied must not be retried: {err:?}"
    );
    let again = store.commit(&[append("x", 2, 2..3)]).unwrap_err();
    assert!(matches!(again, StoreError::Poisoned { .. }), "{again:?}");
    assert_eq!(store.history("x").unwrap().len(), 2, "reads go on");
}

/// The test server starts whatever the PATH (a root's may lack `/usr/sbin`, a service's may
/// hold only its own directory).
#[test]
fn the_test_server_starts_without_a_path() {
    if !alone(
        "the_test_server_starts_without_a_path",
        &[("PATH", "/nonexistent")],
    ) {
        return;
    }
    let store = fresh_store();
    store.commit(&[append("x", 0, 0..1)]).unwrap();
    assert_eq!(store.history("x").unwrap(), vec![event(0)]);
}

/// Reads from many threads while group commits write: each read sees whole calls (a
/// history is a prefix of what was appended, its instance record at least as far), and a
/// commit, once returned, is seen by every read after it.
#[test]
fn reads_during_group_commits_see_whole_calls() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let store = fresh_store();
    const IDS: [&str; 4] = ["a", "b", "c", "d"];
    const CALLS: u32 = 150;
    let done = AtomicBool::new(false);
    let written = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for reader in 0..8 {
            let (store, done, written) = (&store, &done, &written);
            scope.spawn(move || {
                let mut n = 0;
                while !done.load(Ordering::SeqCst) {
                    let id = IDS[(reader + n) % IDS.len()];
                    n += 1;
                    let floor = written.load(Ordering::SeqCst);
                    let history = store.history(id).unwrap();
                    let len = history.len() as u32;
                    assert!(len >= floor * 2, "{id}: {len} events after {floor} calls");
                    assert_eq!(history, (0..len).map(event).collect::<Vec<_>>(), "{id}");
                    let record = store.instance(id).unwrap();
                    let recorded = record.map_or(0, |r| r.history_len);
                    assert!(recorded >= len, "{id}: record at {recorded}, history {len}");
                    let items = store.work_items().unwrap();
                    assert!(items.len() <= IDS.len(), "{items:?}");
                }
            });
        }
        for call in 0..CALLS {
            let first = call * 2;
            // One call as a group commit: a commit per instance, each appending two
            // events, writing the record past them and replacing its work item.
            let commits: Vec<Commit> = IDS
                .iter()
                .enumerate()
                .map(|(i, id)| Commit {
                    instances: vec![(id.to_string(), record(first + 2))],
                    dequeued: vec![u64::from(call) * 10 + i as u64],
                    enqueued: vec![(u64::from(call + 1) * 10 + i as u64, work(id, call))],
                    ..append(id, first, first..first + 2)
                })
                .collect();
            store.commit(&commits).unwrap();
            written.store(call + 1, Ordering::SeqCst);
        }
        done.store(true, Ordering::SeqCst);
    });
    for id in IDS {
        assert_eq!(store.history(id).unwrap().len() as u32, CALLS * 2);
    }
    assert_eq!(store.work_items().unwrap().len(), IDS.len());
}

/// An id that does not compress, of a length about PostgreSQL's index limit: each is kept,
/// or refused as the key it is (never a retryable error, which the runtime would retry
/// forever), as instance id, history id and progress key.
#[test]
fn ids_about_the_index_limit_are_kept_or_refused_as_invalid() {
    let store = fresh_store();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = |len: usize| -> String {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect()
    };
    for len in 2660..2720 {
        let id = random(len);
        let calls = [
            Commit {
                instances: vec![(id.clone(), record(0))],
                ..Commit::default()
            },
            append(&id, 0, 0..1),
            Commit {
                progress: vec![(id.clone(), Some(vec![1]))],
                ..Commit::default()
            },
        ];
        for commit in calls {
            match store.commit(&[commit]) {
                Ok(()) | Err(StoreError::InvalidKey { .. }) => {}
                Err(other) => panic!("an id of {len} bytes: {other:?}"),
            }
        }
    }
}
