//! What `FjallStore`'s errors tell a user: a store open elsewhere is refused as such, and
//! every error that comes from another one keeps it as its `source()`.

use std::error::Error;
use std::path::Path;
use std::process::Command;

use durable_store::{Commit, FjallStore, Store, StoreError};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

#[test]
fn a_store_open_twice_is_refused_as_already_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = FjallStore::open(dir.path()).unwrap();
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyOpen { path } if path == dir.path()),
        "{err:?}"
    );
    assert!(err.is_permanent(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("already open") && message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    drop(first);
    FjallStore::open(dir.path()).expect("a store opens again once its handles are dropped");
}

/// The environment variable that makes [`opened_while_another_process_holds_it`] run: the
/// directory of the store its parent holds open.
const HELD_DIR: &str = "DURABLE_STORE_HELD_DIR";

/// fjall locks its directory with a file lock, which holds across processes: a child
/// process (this test binary, running [`opened_while_another_process_holds_it`]) opens the
/// store this process holds.
#[test]
fn a_store_open_in_another_process_is_refused_as_already_open() {
    let dir = tempfile::tempdir().unwrap();
    let _held = FjallStore::open(dir.path()).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "opened_while_another_process_holds_it",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELD_DIR, dir.path())
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
        output.contains("child: refused:"),
        "the child did not run:\n{output}"
    );
}

/// The child of [`a_store_open_in_another_process_is_refused_as_already_open`]; does nothing
/// unless started by it.
#[test]
fn opened_while_another_process_holds_it() {
    let Some(dir) = std::env::var_os(HELD_DIR) else {
        return;
    };
    let err = FjallStore::open(&dir).unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyOpen { path } if path == Path::new(&dir)),
        "{err:?}"
    );
    assert!(err.is_permanent());
    println!("child: refused: {err}");
}

#[test]
fn a_record_that_does_not_decode_keeps_the_decoders_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(FjallStore::open(dir.path()).unwrap());
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let instances = db
            .keyspace("instances", KeyspaceCreateOptions::default)
            .unwrap();
        instances.insert("i0", [0xff_u8; 3]).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    let err = store.instance("i0").unwrap_err();
    assert!(matches!(err, StoreError::Decode { .. }), "{err:?}");
    let cause = err.source().expect("the decoder's error");
    assert!(cause.is::<postcard::Error>(), "{cause:?}");
}

#[test]
fn a_directory_that_cannot_be_read_keeps_the_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "not a directory").unwrap();
    let err = FjallStore::open(file.join("store")).unwrap_err();
    assert!(
        matches!(err, StoreError::Io { .. }) && !err.is_permanent(),
        "{err:?}"
    );
    let cause = err
        .source()
        .and_then(|cause| cause.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("the io::Error of reading the directory: {err:?}"));
    assert_eq!(cause.kind(), std::io::ErrorKind::NotADirectory);
}

#[test]
fn a_store_fjall_cannot_open_keeps_fjalls_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store
            .commit(&[Commit {
                progress: vec![("k".to_owned(), Some(vec![1]))],
                ..Commit::default()
            }])
            .unwrap();
    }
    std::fs::write(dir.path().join("version"), [0xde, 0xad, 0xbe, 0xef]).unwrap();
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let cause = err.source().expect("fjall's error");
    assert!(cause.is::<fjall::Error>(), "{cause:?}");
}
