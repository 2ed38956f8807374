//! The stores against the conformance suite, and what `FjallStore` does with directories that
//! are not (or no longer) good stores.

use std::cell::Cell;
use std::error::Error;
use std::path::Path;

use durable_store::{
    Commit, Durability, Event, FORMAT_VERSION, FaultyStore, FjallStore, HistoryAppend,
    InstanceFilter, InstanceRecord, KeyKind, MemoryStore, Status, StatusKind, Store, StoreError,
    WorkItem, conformance,
};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

#[test]
fn fjall_store_conforms() {
    let parent = tempfile::tempdir().unwrap();
    let next = Cell::new(0);
    conformance::run(|| {
        next.set(next.get() + 1);
        FjallStore::open(parent.path().join(next.get().to_string())).unwrap()
    });
}

#[test]
fn memory_store_conforms() {
    conformance::run(MemoryStore::default);
}

#[test]
fn fjall_store_survives_reopen_in_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_reopen(&dir.path().join("store"), |path| {
        FjallStore::open(path).unwrap()
    });
}

#[test]
fn fjall_store_survives_reopen_in_an_existing_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_reopen(dir.path(), |path| FjallStore::open(path).unwrap());
}

#[test]
fn buffered_commits_survive_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open_with(dir.path(), Durability::Buffered).unwrap();
        assert_eq!(store.durability(), Durability::Buffered);
        store.commit(&numbered_commits(0..10)).unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    assert_numbered_commits(&store, 0..10);
}

#[test]
fn a_hundred_commits_in_one_call_are_all_applied() {
    let dir = tempfile::tempdir().unwrap();
    let fjall = FjallStore::open(dir.path()).unwrap();
    let memory = MemoryStore::default();
    for store in [&fjall as &dyn Store, &memory] {
        store.commit(&numbered_commits(0..100)).unwrap();
        assert_numbered_commits(store, 0..100);
    }
}

#[test]
fn a_call_with_one_bad_commit_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fjall = FjallStore::open(dir.path()).unwrap();
    let memory = MemoryStore::default();
    for store in [&fjall as &dyn Store, &memory] {
        for bad_id in [String::new(), "x".repeat(70_000)] {
            let mut commits = numbered_commits(0..100);
            commits[99].instances.push((bad_id.clone(), record(0)));
            let err = store.commit(&commits).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::InvalidKey {
                        kind: KeyKind::InstanceId,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string().contains("instance id"),
                "the error should name the bad id: {err}"
            );
            assert_eq!(store.instances().unwrap(), vec![]);
            assert_eq!(store.work_items().unwrap(), vec![]);
            assert_eq!(store.history("i0").unwrap(), vec![]);
            assert_eq!(store.instance(&bad_id).unwrap(), None);
        }
    }
}

#[test]
fn a_refused_key_is_quoted_briefly_with_what_to_use_instead() {
    let dir = tempfile::tempdir().unwrap();
    let fjall = FjallStore::open(dir.path()).unwrap();
    let memory = MemoryStore::default();
    for store in [&fjall as &dyn Store, &memory] {
        let huge = format!("{}{}", "ü".repeat(64), "x".repeat(70_000));
        let message = store
            .commit(&[Commit {
                progress: vec![(huge, Some(vec![1]))],
                ..Commit::default()
            }])
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!(
                "cannot store progress key \"{}…\": it is 70128 bytes long; use 1 to 65529 bytes",
                "ü".repeat(64)
            )
        );
        let err = store
            .commit(&[Commit {
                history: vec![HistoryAppend {
                    instance: "eternal".to_owned(),
                    first: u32::MAX - 1,
                    events: vec![event(0), event(1), event(2)],
                }],
                ..Commit::default()
            }])
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidKey { kind: KeyKind::EventIndex, key, .. } if key == "eternal"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("2^32 events") && message.contains("continue as new"),
            "{message}"
        );
    }
}

#[test]
fn only_io_errors_are_worth_a_retry() {
    let path = std::path::PathBuf::from("/data/store");
    let permanent = [
        StoreError::NotAStore { path: path.clone() },
        StoreError::Corrupt {
            path: path.clone(),
            detail: "a checksum does not match".to_owned(),
            source: None,
        },
        StoreError::Decode {
            what: "event #3 of `x`".to_owned(),
            detail: "unexpected end".to_owned(),
            source: None,
        },
        StoreError::InvalidKey {
            kind: KeyKind::InstanceId,
            key: String::new(),
            reason: "it is empty".to_owned(),
        },
        StoreError::Poisoned {
            path: Some(path),
            detail: "the first failure: syncing it: Input/output error".to_owned(),
            source: None,
        },
    ];
    for err in permanent {
        assert!(err.is_permanent(), "{err:?}");
    }
    let timed_out = StoreError::Io {
        detail: "timed out".to_owned(),
        source: None,
    };
    assert!(!timed_out.is_permanent());
}

#[test]
fn a_poisoned_store_says_to_restart_and_what_is_kept() {
    let with_path = StoreError::Poisoned {
        path: Some("/data/store".into()),
        detail: "the first failure: writing to it: No space left on device".to_owned(),
        source: None,
    };
    assert_eq!(
        with_path.to_string(),
        "the durable store at `/data/store` refused further writes after a failed disk write \
         (the first failure: writing to it: No space left on device); restart the process \
         (reopen the store) to continue: what was acknowledged before the failure is kept \
         (with `Durability::Buffered`, only what was synced)"
    );
    let without = StoreError::Poisoned {
        path: None,
        detail: "injected".to_owned(),
        source: None,
    };
    assert!(
        without.to_string().starts_with(
            "the durable store refused further writes after a failed disk write (injected)"
        ),
        "{without}"
    );
}

/// `FaultyStore::poison_on_failure` over fjall, restarted as the runtime would be: drop the
/// poisoned store, reopen the directory, wrap it anew.
#[test]
fn a_poisoned_faulty_store_writes_again_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FaultyStore::new(FjallStore::open(dir.path()).unwrap())
            .fail_commit(4)
            .poison_on_failure();
        store.commit(&numbered_commits(0..3)).unwrap();
        let err = store.commit(&numbered_commits(3..4)).unwrap_err();
        assert!(
            matches!(err, StoreError::Io { .. }) && !err.is_permanent(),
            "{err:?}"
        );
        let err = store.commit(&numbered_commits(4..5)).unwrap_err();
        assert!(
            matches!(err, StoreError::Poisoned { .. }) && err.is_permanent(),
            "{err:?}"
        );
        assert_numbered_commits(&store, 0..3);
    }
    let store = FaultyStore::new(FjallStore::open(dir.path()).unwrap());
    assert_numbered_commits(&store, 0..3);
    store.commit(&numbered_commits(3..5)).unwrap();
    assert_numbered_commits(&store, 0..5);
}

/// The environment variable that makes [`poisoned_by_a_file_size_limit`] run: the store's
/// directory.
const POISON_DIR: &str = "DURABLE_STORE_POISON_DIR";

/// Poisons a real fjall store the honest way, with a failed journal write: a child process
/// (this test binary, running [`poisoned_by_a_file_size_limit`]) lowers its own file size
/// limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored) below the end of its next commit, so the
/// kernel refuses the journal write with `EFBIG`. Then this process reopens the store.
#[test]
#[cfg(target_os = "linux")]
fn a_failed_journal_write_poisons_fjall_until_reopened() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `prlimit` (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        // An ignored signal stays ignored across exec.
        .arg(r#"trap '' XFSZ; exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "poisoned_by_a_file_size_limit",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(POISON_DIR, dir.path())
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && output.contains("1 passed"),
        "the child failed:\n{output}"
    );
    assert!(
        output.contains("child: poisoned"),
        "the child did not run:\n{output}"
    );
    let store = FjallStore::open(dir.path()).unwrap();
    assert_numbered_commits(&store, 0..3);
    assert_eq!(
        store.progress("big").unwrap(),
        None,
        "the failed commit is gone"
    );
    store.commit(&numbered_commits(3..5)).unwrap();
    assert_numbered_commits(&store, 0..5);
}

/// The child of [`a_failed_journal_write_poisons_fjall_until_reopened`]; does nothing unless
/// started by it.
#[test]
#[cfg(target_os = "linux")]
fn poisoned_by_a_file_size_limit() {
    let Some(dir) = std::env::var_os(POISON_DIR) else {
        return;
    };
    let store = FjallStore::open(&dir).unwrap();
    store.commit(&numbered_commits(0..3)).unwrap();
    // The journal holds a few KiB so far: 1 MiB leaves room for small commits, not for 2 MiB
    // that do not compress.
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg("--fsize=1048576")
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit failed");
    let err = store
        .commit(&[Commit {
            progress: vec![("big".to_owned(), Some(noise(2 << 20)))],
            ..Commit::default()
        }])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { detail, .. } if detail.contains("File too large")),
        "{err:?}"
    );
    let fjalls = err
        .source()
        .and_then(|cause| cause.downcast_ref::<fjall::Error>());
    assert!(
        matches!(fjalls, Some(fjall::Error::Io(_))),
        "the failed write keeps fjall's error: {err:?}"
    );
    println!("child: the failed write: {err}");
    for err in [
        store.commit(&numbered_commits(3..4)).unwrap_err(),
        store.persist().unwrap_err(),
    ] {
        println!("child: poisoned: {err}");
        match &err {
            StoreError::Poisoned {
                path: Some(path),
                detail,
                ..
            } => {
                assert_eq!(path, Path::new(&dir));
                assert!(detail.contains("File too large"), "{detail}");
                let first = err
                    .source()
                    .and_then(|cause| cause.downcast_ref::<fjall::Error>());
                assert!(
                    matches!(first, Some(fjall::Error::Io(_))),
                    "a poisoned store keeps the first failure's error: {err:?}"
                );
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
        assert!(err.is_permanent());
    }
    assert_numbered_commits(&store, 0..3);
    assert_eq!(store.progress("big").unwrap(), None);
}

#[test]
fn a_directory_with_other_files_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.txt"), "my notes").unwrap();
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::NotAStore { path } if path == dir.path()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("empty or new directory"), "{message}");
    // Nothing was written next to the user's file.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["README.txt"]);
}

#[test]
fn a_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store");
    std::fs::write(&file, "not a directory").unwrap();
    let err = FjallStore::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
}

#[test]
fn another_fjall_database_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let users = db
            .keyspace("users", KeyspaceCreateOptions::default)
            .unwrap();
        users.insert("alice", "admin").unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    // The other database was left as it was.
    let db = Database::builder(dir.path()).open().unwrap();
    assert_eq!(db.list_keyspace_names().len(), 1);
}

/// Opens the store at `dir` once, then marks it with `marker` as its format.
fn mark_format(dir: &std::path::Path, marker: &str) {
    drop(FjallStore::open(dir).unwrap());
    let db = Database::builder(dir).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    meta.insert("format", marker).unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

#[test]
fn a_store_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    mark_format(dir.path(), "durable-store/99");
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::OtherFormat { found: 99, current, .. } if current == FORMAT_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer durable"), "{err}");
    assert!(err.is_permanent());
    let dir = tempfile::tempdir().unwrap();
    mark_format(dir.path(), "something-else");
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("something-else"), "{err}");
}

/// A store written when user payloads were postcard (format 1) is refused, saying so and
/// what to do, rather than read into wrong values.
#[test]
fn a_store_of_the_postcard_payload_format_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    mark_format(dir.path(), "durable-store/1");
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::OtherFormat { found: 1, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    for words in ["format 1", "postcard", "JSON", "new directory"] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
}

/// Turns the store at `dir` into one of format 2, as the last release wrote it: no
/// indexes, no counters; `leftover` adds an index entry a migration cut short would leave.
fn make_format_2(dir: &std::path::Path, leftover: bool) {
    let db = Database::builder(dir).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    for name in ["by_status", "by_orchestrator"] {
        let keyspace = db.keyspace(name, KeyspaceCreateOptions::default).unwrap();
        db.delete_keyspace(keyspace).unwrap();
    }
    let counters: Vec<_> = meta
        .prefix("count/")
        .map(|guard| guard.key().unwrap())
        .collect();
    assert!(!counters.is_empty(), "format 3 keeps counters in `meta`");
    for key in counters {
        meta.remove(key).unwrap();
    }
    if leftover {
        let by_status = db
            .keyspace("by_status", KeyspaceCreateOptions::default)
            .unwrap();
        by_status
            .insert(b"\x01\0\0\0\0\0\0\0\x01gone", b"")
            .unwrap();
    }
    meta.insert("format", "durable-store/2").unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

/// A store of format 2 (before the indexes) is migrated when opened: its indexes and
/// counters are built once from its records, and it is marked as format 3; a migration
/// cut short is run again from the start.
#[test]
fn a_store_of_format_2_gets_its_indexes_built_at_open() {
    for leftover in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FjallStore::open(dir.path()).unwrap();
            store.commit(&numbered_commits(0..30)).unwrap();
            let mut done = record(30);
            done.status = Status::Completed { output: vec![] };
            done.created_ms = 0;
            store
                .commit(&[Commit {
                    instances: vec![("done".to_owned(), done)],
                    ..Commit::default()
                }])
                .unwrap();
        }
        make_format_2(dir.path(), leftover);
        let store = FjallStore::open(dir.path()).unwrap();
        for n in 0..30 {
            assert_eq!(store.instance(&format!("i{n}")).unwrap(), Some(record(n)));
        }
        let counts = store.count_by_status().unwrap();
        assert_eq!(counts[&StatusKind::Running], 30, "{counts:?}");
        assert_eq!(counts[&StatusKind::Completed], 1, "{counts:?}");
        assert_eq!(counts.values().sum::<u64>(), 31, "{counts:?}");
        assert_eq!(store.live_instances().unwrap().len(), 30);
        let filter = InstanceFilter {
            statuses: vec![StatusKind::Completed],
            ..InstanceFilter::default()
        };
        let page = store.list_instances(&filter, None, 10).unwrap();
        let ids: Vec<_> = page.instances.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["done"]);
        let page = store
            .list_instances(&InstanceFilter::default(), None, 40)
            .unwrap();
        assert_eq!(
            page.instances.len(),
            31,
            "leftover {leftover}: the migration started over"
        );
        drop(store);
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        let marker = meta.get("format").unwrap().unwrap();
        assert_eq!(
            &*marker,
            format!("durable-store/{FORMAT_VERSION}").as_bytes()
        );
        assert_eq!(FORMAT_VERSION, 3);
    }
}

#[test]
fn an_interrupted_first_open_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The first open creates `meta` before it writes the format marker into it.
        let db = Database::builder(dir.path()).open().unwrap();
        db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    store.commit(&numbered_commits(0..3)).unwrap();
    assert_numbered_commits(&store, 0..3);
}

#[test]
fn a_creation_killed_halfway_leaves_no_store_and_is_redone() {
    let parent = tempfile::tempdir().unwrap();
    let path = parent.path().join("store");
    // What a creation killed inside fjall leaves: a staging directory without `version`.
    let staging = parent.path().join("store.creating");
    std::fs::create_dir_all(staging.join("keyspaces")).unwrap();
    std::fs::write(staging.join("0.jnl"), garbage(64)).unwrap();
    let store = FjallStore::open(&path).unwrap();
    store.commit(&numbered_commits(0..3)).unwrap();
    assert_numbered_commits(&store, 0..3);
    assert!(!staging.exists(), "the unfinished creation is cleared away");
}

#[test]
fn a_record_that_does_not_decode_names_its_keyspace_and_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.commit(&numbered_commits(0..1)).unwrap();
    }
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let instances = db
            .keyspace("instances", KeyspaceCreateOptions::default)
            .unwrap();
        instances.insert("i0", [0xff_u8; 3]).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    for err in [
        store.instance("i0").unwrap_err(),
        store.instances().unwrap_err(),
    ] {
        match &err {
            StoreError::Decode { what, .. } => {
                assert!(
                    what.contains("`i0`") && what.contains("instances"),
                    "{what}"
                );
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}

/// Damages a store's files in several ways; opening must fail with an error a user can act on,
/// never panic and never pretend the store is fine and empty.
#[test]
fn a_damaged_store_is_an_error_not_a_panic() {
    // Each returns a file's new bytes, or `None` to leave it alone.
    type Damage = fn(&Path, &[u8]) -> Option<Vec<u8>>;
    let damages: [(&str, Damage); 8] = [
        ("every file overwritten", |_, old| {
            Some(garbage(old.len().max(64)))
        }),
        ("every file truncated", |_, _| Some(Vec::new())),
        ("the version file overwritten", |path, old| {
            is_version(path).then(|| garbage(old.len()))
        }),
        ("every file but the version overwritten", |path, old| {
            (!is_version(path)).then(|| garbage(old.len().max(64)))
        }),
        ("every file but the version cut in half", |path, old| {
            (!is_version(path)).then(|| old[..old.len() / 2].to_vec())
        }),
        ("the journals overwritten", |path, old| {
            is_journal(path).then(|| garbage(old.len().max(64)))
        }),
        ("the journals truncated", |path, _| {
            is_journal(path).then(Vec::new)
        }),
        ("the keyspace files overwritten", |path, old| {
            path.components()
                .any(|c| c.as_os_str() == "keyspaces")
                .then(|| garbage(old.len().max(64)))
        }),
    ];
    for (how, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FjallStore::open(dir.path()).unwrap();
            store.commit(&numbered_commits(0..50)).unwrap();
        }
        rewrite_files(dir.path(), damage);
        match FjallStore::open(dir.path()) {
            Err(err @ (StoreError::Corrupt { .. } | StoreError::NotAStore { .. })) => {
                let message = err.to_string();
                assert!(
                    message.contains(&dir.path().display().to_string()),
                    "{how}: {message}"
                );
                assert!(
                    message.contains("restore it from a backup")
                        || message.contains("empty or new directory"),
                    "{how}: {message}"
                );
            }
            Err(other) => panic!("{how}: expected Corrupt or NotAStore, got {other:?}"),
            Ok(store) => panic!(
                "{how}: the damaged store opened and holds {:?} instances",
                store.instances().map(|i| i.len())
            ),
        }
    }
}

fn is_journal(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jnl")
}

fn is_version(path: &Path) -> bool {
    path.ends_with("version")
}

fn rewrite_files(dir: &Path, damage: fn(&Path, &[u8]) -> Option<Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rewrite_files(&path, damage);
        } else if !path.ends_with("lock") {
            let old = std::fs::read(&path).unwrap();
            if let Some(new) = damage(&path, &old) {
                std::fs::write(&path, new).unwrap();
            }
        }
    }
}

/// `len` bytes that do not compress (fjall compresses large journal entries).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Bytes that look like nothing fjall writes.
fn garbage(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8 ^ 0xa5).collect()
}

fn record(n: u32) -> InstanceRecord {
    InstanceRecord {
        version: 1,
        orchestrator: "flow".to_owned(),
        input: n.to_be_bytes().to_vec(),
        status: Status::Running,
        created_ms: 1,
        updated_ms: 2,
        history_len: 1,
        incarnation: 1,
        generation: 0,
        custom_status: None,
        parent: None,
    }
}

fn event(n: u32) -> Event {
    Event::Started {
        orchestrator: "flow".to_owned(),
        input: n.to_be_bytes().to_vec(),
    }
}

/// Commit `n` writes instance `i{n}`, its first event, work item `n` and progress `p{n}`.
fn numbered_commits(range: std::ops::Range<u32>) -> Vec<Commit> {
    range
        .map(|n| Commit {
            instances: vec![(format!("i{n}"), record(n))],
            history: vec![HistoryAppend {
                instance: format!("i{n}"),
                first: 0,
                events: vec![event(n)],
            }],
            enqueued: vec![(
                u64::from(n),
                WorkItem::Message {
                    incarnation: 1,
                    generation: Some(0),
                    instance: format!("i{n}"),
                    event: event(n),
                },
            )],
            progress: vec![(format!("p{n}"), Some(n.to_be_bytes().to_vec()))],
            ..Commit::default()
        })
        .collect()
}

fn assert_numbered_commits(store: &dyn Store, range: std::ops::Range<u32>) {
    assert_eq!(store.instances().unwrap().len(), range.len());
    assert_eq!(store.work_items().unwrap().len(), range.len());
    for n in range {
        assert_eq!(store.instance(&format!("i{n}")).unwrap(), Some(record(n)));
        assert_eq!(store.history(&format!("i{n}")).unwrap(), vec![event(n)]);
        assert_eq!(
            store.progress(&format!("p{n}")).unwrap(),
            Some(n.to_be_bytes().to_vec())
        );
    }
}
