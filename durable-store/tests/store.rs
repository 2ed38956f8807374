//! The stores against the conformance suite, and what `FjallStore` does with directories that
//! are not (or no longer) good stores.

use std::cell::Cell;
use std::path::Path;

use durable_store::{
    Commit, Durability, Event, FjallStore, HistoryAppend, InstanceRecord, MemoryStore, Status,
    Store, StoreError, WorkItem, conformance,
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

#[test]
fn a_store_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(FjallStore::open(dir.path()).unwrap());
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        meta.insert("format", "durable-store/99").unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("durable-store/99"), "{err}");
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
fn a_store_open_twice_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = FjallStore::open(dir.path()).unwrap();
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
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
