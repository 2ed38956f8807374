//! Checks of the indexes and counters of [`FjallStore`] against its records.

use std::collections::BTreeMap;

use crate::query::{InstanceFilter, LIVE_STATUSES};
use crate::record::{Commit, Failure, FailureKind, InstanceRecord, Status, StatusKind};
use crate::store::Store;

use super::FjallStore;

/// Checks listings, counters, the live instances and the raw index keyspaces against
/// a full scan of the records.
fn check(store: &FjallStore, step: u32) {
    let records: BTreeMap<String, InstanceRecord> =
        store.instances().unwrap().into_iter().collect();
    let list = |statuses: Vec<StatusKind>| {
        let filter = InstanceFilter {
            statuses,
            ..InstanceFilter::default()
        };
        let mut ids: Vec<String> = (store.list_instances(&filter, None, 10_000).unwrap())
            .instances
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    };
    let of = |kinds: &[StatusKind]| -> Vec<String> {
        let kinds = kinds.to_vec();
        (records.iter())
            .filter(|(_, r)| kinds.contains(&r.status.kind()))
            .map(|(id, _)| id.clone())
            .collect()
    };
    assert_eq!(list(vec![]), of(&StatusKind::ALL), "step {step}: all");
    let counts = store.count_by_status().unwrap();
    for kind in StatusKind::ALL {
        assert_eq!(list(vec![kind]), of(&[kind]), "step {step}: {kind}");
        assert_eq!(
            counts[&kind],
            of(&[kind]).len() as u64,
            "step {step}: {kind}"
        );
    }
    let mut live: Vec<String> = (store.live_instances().unwrap().into_iter())
        .map(|(id, _)| id)
        .collect();
    live.sort();
    assert_eq!(live, of(&LIVE_STATUSES), "step {step}: live");
    let finished = records.values().filter(|r| r.status.is_terminal()).count();
    assert_eq!(
        store.inner.by_status.len().unwrap(),
        records.len(),
        "step {step}"
    );
    assert_eq!(
        store.inner.by_orchestrator.len().unwrap(),
        finished,
        "step {step}"
    );
}

/// Instances started, moved between live statuses, finished, purged and restarted as
/// the runtime does (a new incarnation for every run), several per call, with flushes,
/// compactions and reopens at seeded moments: the indexes and counters always agree
/// with the records.
#[test]
fn indexes_and_counters_agree_with_the_records_through_flushes_compactions_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FjallStore::open(dir.path()).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut incarnation = 0;
    let mut model: BTreeMap<String, InstanceRecord> = BTreeMap::new();
    let failed = Status::Failed {
        failure: Failure {
            kind: FailureKind::Panicked,
            message: "boom".into(),
        },
    };
    for step in 0..600u32 {
        let mut commits = Vec::new();
        for _ in 0..=next(3) {
            let id = format!("i{}", next(12));
            let mut commit = Commit::default();
            match model.get(&id).cloned() {
                None => {
                    incarnation += 1;
                    let record = InstanceRecord::pending(
                        format!("o{}", next(2)),
                        1,
                        vec![],
                        next(5),
                        incarnation,
                        None,
                    );
                    commit.instances.push((id.clone(), record));
                }
                Some(mut record) if record.status.is_terminal() => {
                    if next(2) == 0 {
                        commit.instances_removed.push(id.clone());
                    } else {
                        incarnation += 1;
                        record.incarnation = incarnation;
                        record.status = Status::Pending;
                        commit.instances.push((id.clone(), record));
                    }
                }
                Some(mut record) => {
                    record.status = match next(6) {
                        0 => Status::Running,
                        1 => Status::Suspended { reason: "r".into() },
                        2 => Status::Stalled {
                            failure: Failure {
                                kind: FailureKind::Panicked,
                                message: "s".into(),
                            },
                        },
                        3 => Status::Completed { output: vec![] },
                        4 => failed.clone(),
                        _ => Status::Terminated { reason: "t".into() },
                    };
                    commit.instances.push((id.clone(), record));
                }
            }
            for id in &commit.instances_removed {
                model.remove(id);
            }
            for (id, record) in &commit.instances {
                model.insert(id.clone(), record.clone());
            }
            commits.push(commit);
        }
        store.commit(&commits).unwrap();
        match next(8) {
            0 => {
                store.inner.by_status.rotate_memtable_and_wait().unwrap();
                store
                    .inner
                    .by_orchestrator
                    .rotate_memtable_and_wait()
                    .unwrap();
            }
            1 => {
                store.inner.by_status.major_compact().unwrap();
                store.inner.by_orchestrator.major_compact().unwrap();
            }
            2 if step % 5 == 0 => {
                drop(store);
                store = FjallStore::open(dir.path()).unwrap();
            }
            _ => {}
        }
        check(&store, step);
    }
}

/// A call applied twice (written, reported failed, retried: `FaultyStore`'s
/// `written_anyway`) leaves the work queue, indexes and counters as once, across
/// flushes, compactions and a reopen.
#[test]
fn a_call_applied_twice_leaves_what_one_leaves() {
    use crate::record::{Event, WorkItem};
    let dir = tempfile::tempdir().unwrap();
    let message = WorkItem::Message {
        instance: "x".into(),
        incarnation: 1,
        generation: None,
        event: Event::ResumeRequested,
    };
    let mut record = InstanceRecord::pending("o".into(), 1, vec![], 3, 1, None);
    let store = FjallStore::open(dir.path()).unwrap();
    store
        .commit(&[Commit {
            instances: vec![("x".into(), record.clone())],
            enqueued: vec![(1, message.clone())],
            ..Commit::default()
        }])
        .unwrap();
    store.inner.work.rotate_memtable_and_wait().unwrap();
    record.status = Status::Completed { output: vec![] };
    let finish = Commit {
        instances: vec![("x".into(), record)],
        dequeued: vec![1],
        enqueued: vec![(2, message.clone())],
        ..Commit::default()
    };
    store.commit(std::slice::from_ref(&finish)).unwrap();
    store.inner.work.rotate_memtable_and_wait().unwrap();
    store.commit(&[finish]).unwrap();
    check(&store, 0);
    store
        .commit(&[Commit {
            dequeued: vec![2],
            ..Commit::default()
        }])
        .unwrap();
    for keyspace in [&store.inner.work, &store.inner.by_status] {
        keyspace.rotate_memtable_and_wait().unwrap();
    }
    assert_eq!(store.work_items().unwrap(), vec![]);
    check(&store, 1);
    store.inner.work.major_compact().unwrap();
    assert_eq!(store.work_items().unwrap(), vec![]);
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.work_items().unwrap(), vec![]);
    check(&store, 2);
    assert_eq!(store.count_by_status().unwrap()[&StatusKind::Completed], 1);
}

/// The history fence reads a history's length from disk (memtable or tables, across
/// reopens) when it does not keep it, and keeps it right through appends, removals and
/// finished instances.
#[test]
fn the_history_fence_knows_every_length_across_flushes_and_reopens() {
    use crate::error::StoreError;
    use crate::record::{Event, HistoryAppend};
    let dir = tempfile::tempdir().unwrap();
    let append = |first: u32, count: u32| Commit {
        history: vec![HistoryAppend {
            instance: "x".into(),
            first,
            events: (first..first + count)
                .map(|n| Event::ActivityCompleted {
                    seq: n.into(),
                    output: vec![],
                })
                .collect(),
        }],
        ..Commit::default()
    };
    let refused = |store: &FjallStore, first: u32, stored: u32| {
        let err = store.commit(&[append(first, 1)]).unwrap_err();
        assert!(
            matches!(err, StoreError::HistoryConflict { first: f, stored: s, .. }
                if f == first && s == stored),
            "{err:?}"
        );
    };
    let mut len = 0;
    for round in 0..4u32 {
        let store = FjallStore::open(dir.path()).unwrap();
        refused(&store, len + 1, len);
        if len > 0 {
            refused(&store, len - 1, len);
        }
        store.commit(&[append(len, 300)]).unwrap();
        len += 300;
        if round % 2 == 1 {
            store.inner.history.rotate_memtable_and_wait().unwrap();
        }
        refused(&store, len + 1, len);
        // Finished, the instance's length is read again.
        let done = InstanceRecord {
            status: Status::Completed { output: vec![] },
            ..InstanceRecord::pending("o".into(), 1, vec![], 0, 1, None)
        };
        store
            .commit(&[Commit {
                instances: vec![("x".into(), done)],
                ..append(len, 1)
            }])
            .unwrap();
        len += 1;
        refused(&store, len - 1, len);
        assert_eq!(store.history("x").unwrap().len() as u32, len);
    }
    let store = FjallStore::open(dir.path()).unwrap();
    store
        .commit(&[
            Commit {
                histories_removed: vec![("x".into(), len)],
                ..Commit::default()
            },
            append(0, 2),
        ])
        .unwrap();
    refused(&store, len, 2);
    store.commit(&[append(2, 1)]).unwrap();
    assert_eq!(store.history("x").unwrap().len(), 3);
}

/// A store written by the build that brought entities holds a live `by_status` entry for
/// each entity it made then: listings skip it, and removing the entity removes it.
#[test]
fn an_entity_indexed_by_an_older_build_is_skipped_and_its_entry_removed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mut entity = InstanceRecord::pending("@Account".into(), 0, Vec::new(), 7, 1, None);
    entity.status = Status::Running;
    let flow = InstanceRecord::pending("flow".into(), 1, Vec::new(), 9, 1, None);
    store
        .commit(&[Commit {
            instances: vec![("@Account@a".into(), entity.clone()), ("f".into(), flow)],
            ..Commit::default()
        }])
        .unwrap();
    assert_eq!(
        store.inner.by_status.len().unwrap(),
        1,
        "entities are not indexed"
    );
    // The entry the older build wrote.
    let legacy = super::index::Entry::of(&entity)
        .legacy_entity_key("@Account@a")
        .unwrap();
    store.inner.by_status.insert(&legacy, b"").unwrap();
    let listed = store
        .list_instances(&InstanceFilter::default(), None, 10)
        .unwrap();
    let ids: Vec<&str> = listed.instances.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["f"]);
    store
        .commit(&[Commit {
            instances_removed: vec!["@Account@a".into()],
            ..Commit::default()
        }])
        .unwrap();
    for flush in [false, true] {
        if flush {
            store.inner.by_status.rotate_memtable_and_wait().unwrap();
            store.inner.by_status.major_compact().unwrap();
        }
        assert_eq!(store.inner.by_status.len().unwrap(), 1, "flushed: {flush}");
        let listed = store
            .list_instances(&InstanceFilter::default(), None, 10)
            .unwrap();
        assert_eq!(listed.instances.len(), 1, "flushed: {flush}");
    }
}
