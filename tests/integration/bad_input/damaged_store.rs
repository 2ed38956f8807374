//! A damaged store: records and journals that do not decode.

use super::*;

/// Overwrites `key` in keyspace `keyspace` of the closed store at `path` with bytes that
/// decode as nothing.
fn damage(path: &Path, keyspace: &str, key: &[u8]) {
    let db = Database::builder(path).open().unwrap();
    let space = db
        .keyspace(keyspace, KeyspaceCreateOptions::default)
        .unwrap();
    assert!(space.contains_key(key).unwrap(), "no such key to damage");
    space.insert(key, [0xff_u8; 5]).unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

fn history_key(id: &str, index: u32) -> Vec<u8> {
    let mut key = (id.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

#[test]
fn a_runtime_on_a_store_with_a_damaged_work_item_does_not_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "a");
    let work_id = store.work_items().unwrap()[0].0;
    let history_len = store.history("a").unwrap().len();
    drop(store);
    damage(dir.path(), "work", &work_id.to_be_bytes());

    let store = FjallStore::open(dir.path()).unwrap();
    let err = lifetime(async { builder(store.clone()).start().await.unwrap_err() });
    let Error::Store(StoreError::Decode { what, .. }) = &err else {
        panic!("expected a decode error, got {err:?}");
    };
    assert!(
        what.contains(&format!("work item {work_id}")) && what.contains("keyspace `work`"),
        "{what}"
    );
    assert!(
        err.to_string()
            .contains("written by an incompatible version or is damaged"),
        "{err}"
    );
    // Nothing else was touched: the instance and its history read as before.
    assert_eq!(
        store.instance("a").unwrap().unwrap().status,
        Status::Running
    );
    assert_eq!(store.history("a").unwrap().len(), history_len);
}

#[test]
fn a_runtime_on_a_store_with_a_damaged_instance_record_does_not_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "a");
    let history_len = store.history("a").unwrap().len();
    drop(store);
    damage(dir.path(), "instances", b"a");

    let store = FjallStore::open(dir.path()).unwrap();
    let err = lifetime(async { builder(store.clone()).start().await.unwrap_err() });
    assert!(
        matches!(&err, Error::Store(StoreError::Decode { what, .. })
            if what.contains("instance record `a`") && what.contains("keyspace `instances`")),
        "{err:?}"
    );
    assert_eq!(
        store.history("a").unwrap().len(),
        history_len,
        "the history is kept"
    );
    assert_eq!(store.work_items().unwrap().len(), 1, "the queue is kept");
}

/// The turn that reads the damaged history stalls the instance, naming the event, rather
/// than retrying a read that cannot succeed.
#[test]
fn an_instance_whose_history_is_damaged_stops_with_an_error_naming_it_and_the_rest_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "damaged");
    drop(store);
    damage(dir.path(), "history", &history_key("damaged", 1));

    let store = FjallStore::open(dir.path()).unwrap();
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let healthy = client.start(chain, "healthy", 2).await.unwrap();
        assert_eq!(healthy.wait(WAIT).await.unwrap(), 12, "the others run");
        let damaged = client.instance(gated_chain, "damaged");
        match damaged.wait(SOON).await {
            Err(Error::Stalled { failure, .. } | Error::Failed { failure, .. }) => {
                assert!(
                    failure.message.contains("event #1 of `damaged`"),
                    "{}",
                    failure.message
                );
            }
            other => panic!(
                "the instance with a damaged history should stop with an error naming the \
                 event; got {other:?}"
            ),
        }
    });
    assert!(
        store.history("damaged").is_err(),
        "the damaged event is kept for repair"
    );
}

#[test]
fn a_journal_torn_at_its_end_opens_with_every_acknowledged_turn() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "a");
    let history = store.history("a").unwrap();
    drop(store);
    // A crash in the middle of writing a batch that was never acknowledged leaves part of
    // it at the end of the journal.
    let journal = journals(dir.path()).pop().expect("a journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let torn = bytes[bytes.len() / 2..].to_vec();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&journal, bytes).unwrap();

    let store = FjallStore::open(dir.path()).expect("a torn tail is not damage");
    assert_eq!(store.history("a").unwrap(), history);
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let output = runtime.client().instance(gated_chain, "a").wait(WAIT).await;
        assert_eq!(output.unwrap(), 8 + 2000);
        runtime.shutdown().await;
    });
}

fn journals(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(journals(&path));
        } else if path.extension().is_some_and(|e| e == "jnl") {
            found.push(path);
        }
    }
    found.sort();
    found
}
