//! Tests of [`FaultyStore`](super::FaultyStore) and its [`FaultSwitch`](super::FaultSwitch),
//! over the in-memory store.

use super::*;
use crate::memory_store::MemoryStore;

fn put(key: &str) -> Commit {
    Commit {
        progress: vec![(key.to_owned(), Some(vec![7]))],
        ..Commit::default()
    }
}

#[test]
fn without_faults_it_is_the_store_it_wraps() {
    crate::conformance::run(|| FaultyStore::new(MemoryStore::new()));
}

#[test]
fn a_rule_on_one_kind_of_read_leaves_the_others_alone() {
    let store = FaultyStore::new(MemoryStore::new()).fail_call(Call::History, 2);
    assert!(store.history("a").is_ok());
    assert!(store.instances().is_ok());
    assert!(store.history("a").is_err());
    assert!(store.history("a").is_ok());
    let switch = store.switch();
    assert_eq!(switch.count(Call::History), 3);
    assert_eq!(switch.count(Call::Read), 4);
    assert_eq!(switch.injected(), 1);
}

#[test]
fn commits_fail_in_a_window_and_write_nothing() {
    let store = FaultyStore::new(MemoryStore::new())
        .fail_commits_from(2)
        .until(4);
    let results: Vec<bool> = ["a", "b", "c", "d"]
        .iter()
        .map(|key| store.commit(&[put(key)]).is_ok())
        .collect();
    assert_eq!(results, [true, false, false, true]);
    assert_eq!(store.inner().progress("b").unwrap(), None);
    assert_eq!(store.inner().progress("d").unwrap(), Some(vec![7]));
}

#[test]
fn a_write_fails_if_it_carries_a_failing_commit() {
    let store = FaultyStore::new(MemoryStore::new()).fail_commit(3);
    assert!(store.commit(&[put("a"), put("b")]).is_ok());
    let err = store.commit(&[put("c"), put("d")]).unwrap_err();
    assert!(err.to_string().contains("commit #3"), "{err}");
    assert_eq!(store.progress("d").unwrap(), None, "the whole write failed");
    assert!(store.commit(&[put("e")]).is_ok());
    let switch = store.switch();
    assert_eq!(
        (switch.count(Call::Commit), switch.count(Call::Write)),
        (5, 3)
    );
    let store = FaultyStore::new(MemoryStore::new()).fail_call(Call::Write, 2);
    assert!(store.commit(&[put("a"), put("b")]).is_ok());
    assert!(store.commit(&[put("c")]).is_err());
}

#[test]
fn written_anyway_writes_then_fails() {
    let store = FaultyStore::new(MemoryStore::new())
        .fail_commit(1)
        .written_anyway();
    let err = store.commit(&[put("a")]).unwrap_err();
    assert!(
        err.to_string().contains("injected fault: commit #1"),
        "{err}"
    );
    assert_eq!(store.progress("a").unwrap(), Some(vec![7]));
}

#[test]
fn a_poisoned_store_refuses_every_later_write_but_reads() {
    let store = FaultyStore::new(MemoryStore::new())
        .fail_commit(2)
        .poison_on_failure();
    let switch = store.switch();
    store.commit(&[put("a")]).unwrap();
    assert!(!switch.is_poisoned());
    let err = store.commit(&[put("b")]).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { detail, .. } if detail.contains("commit #2")),
        "{err:?}"
    );
    assert!(switch.is_poisoned());
    switch.heal();
    for key in ["c", "d"] {
        match store.clone().commit(&[put(key)]) {
            Err(StoreError::Poisoned {
                path: None, detail, ..
            }) => {
                assert!(detail.contains("injected fault: commit #2"), "{detail}");
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert_eq!(store.progress("a").unwrap(), Some(vec![7]), "reads go on");
    for key in ["b", "c", "d"] {
        assert_eq!(
            store.inner().progress(key).unwrap(),
            None,
            "{key} was written"
        );
    }
    assert_eq!(
        (switch.count(Call::Write), switch.injected()),
        (4, 1),
        "refused writes are counted, but are not injected faults"
    );
}

#[test]
fn poisoning_follows_write_failures_only() {
    let store = FaultyStore::new(MemoryStore::new())
        .fail_read(1)
        .poison_on_failure();
    assert!(matches!(store.instances(), Err(StoreError::Io { .. })));
    assert!(
        store.commit(&[put("a")]).is_ok(),
        "a failed read does not poison"
    );
    let switch = store.switch();
    switch.break_disk();
    assert!(matches!(
        store.commit(&[put("b")]),
        Err(StoreError::Io { .. })
    ));
    switch.heal();
    assert!(matches!(
        store.commit(&[put("c")]),
        Err(StoreError::Poisoned { .. })
    ));
    // Without the mode, the same failure leaves the store writable.
    let store = FaultyStore::new(MemoryStore::new()).fail_commit(1);
    assert!(store.commit(&[put("a")]).is_err());
    assert!(store.commit(&[put("b")]).is_ok());
    assert!(!store.switch().is_poisoned());
}

#[test]
fn written_anyway_then_poisoned() {
    let store = FaultyStore::new(MemoryStore::new())
        .fail_commit(1)
        .written_anyway()
        .poison_on_failure();
    assert!(matches!(
        store.commit(&[put("a")]),
        Err(StoreError::Io { .. })
    ));
    assert_eq!(
        store.progress("a").unwrap(),
        Some(vec![7]),
        "written anyway"
    );
    assert!(matches!(
        store.commit(&[put("b")]),
        Err(StoreError::Poisoned { .. })
    ));
    assert_eq!(store.progress("b").unwrap(), None, "refused, not written");
}

#[test]
fn the_switch_breaks_every_call_until_healed() {
    let store = FaultyStore::new(MemoryStore::new()).fail_reads_from(1);
    let switch = store.switch();
    assert!(store.instances().is_err());
    switch.break_disk();
    assert!(store.commit(&[put("a")]).is_err());
    switch.heal();
    assert!(store.commit(&[put("a")]).is_ok());
    assert!(store.instances().is_ok(), "heal removes the rules too");
}
