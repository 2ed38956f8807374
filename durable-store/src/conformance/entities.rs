//! Checks of entities' records ([`is_entity`](crate::is_entity): `orchestrator` `@Name`,
//! id `@Name@key`): left out of the orchestrations' listings, counts and live instances,
//! listed by id with [`Store::instances_with_prefix`], and removed when idle with
//! [`Store::remove_idle_entities`].

use super::Check;
use super::leases::{LONG, lease};
use super::listing::{at, indexes_agree};
use super::records::message;
use crate::error::StoreError;
use crate::query::{InstanceFilter, zero_counts};
use crate::record::{Commit, InstanceRecord, ParentLink, Status, StatusKind};
use crate::store::Store;

/// The record of an entity of type `name`, created at `created_ms`, with `state`.
fn entity(name: &str, status: Status, created_ms: u64, state: &[u8]) -> InstanceRecord {
    InstanceRecord {
        version: 0,
        input: state.to_vec(),
        history_len: 0,
        ..at(&format!("@{name}"), status, created_ms, created_ms)
    }
}

/// The ids of every page of `prefix`, `limit` a page, each page resuming after the last
/// id of the one before.
fn pages<S: Store + ?Sized>(
    c: &Check<'_, S>,
    store: &S,
    prefix: &str,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c.ok(store.instances_with_prefix(prefix, after.as_deref(), limit));
        assert!(
            page.len() <= limit,
            "conformance `{}`: a page of limit {limit} held {} instances",
            c.name,
            page.len()
        );
        let ids: Vec<String> = page.into_iter().map(|(id, _)| id).collect();
        let done = ids.len() < limit;
        after = ids.last().cloned();
        pages.push(ids);
        if done {
            return pages;
        }
        assert!(
            pages.len() < 1_000,
            "conformance `{}`: pages never end",
            c.name
        );
    }
}

pub(super) fn entities_are_listed_by_id_apart_from_orchestrations(store: &impl Store) {
    let c = Check::new("entities_are_listed_by_id_apart_from_orchestrations", store);
    let page = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    c.commit(vec![Commit {
        instances: vec![
            (
                "@Account@bob".into(),
                entity("Account", Status::Running, 5, b"2"),
            ),
            (
                "@Account@alice".into(),
                entity("Account", Status::Pending, 9, b""),
            ),
            (
                "@Account@".into(),
                entity("Account", Status::Running, 7, b"0"),
            ),
            (
                "@Account@al".into(),
                entity("Account", Status::Running, 1, b"1"),
            ),
            (
                "@Accounts@x".into(),
                entity("Accounts", Status::Running, 3, b"9"),
            ),
            (
                "@Cart@alice".into(),
                entity("Cart", Status::Running, 4, b"[]"),
            ),
            ("@Account".into(), at("flow", Status::Running, 6, 6)),
            ("flow-1".into(), at("flow", Status::Running, 8, 8)),
            ("@Account@zed".into(), at("order", Status::Pending, 2, 2)),
        ],
        ..Commit::default()
    }]);
    indexes_agree(&c, store, "entities and orchestrations were written");
    let mut counts = zero_counts();
    counts.insert(StatusKind::Running, 2);
    counts.insert(StatusKind::Pending, 1);
    let what = "count_by_status() counts the three orchestrations, not the six entities";
    c.expect(store.count_by_status(), counts, what);
    let every = c.ok(store.list_instances(&InstanceFilter::default(), None, 100));
    let listed: Vec<String> = every.instances.into_iter().map(|(id, _)| id).collect();
    let what = "list_instances() lists orchestrations only, in creation order";
    c.expect(
        Ok(listed),
        page(&["@Account@zed", "@Account", "flow-1"]),
        what,
    );
    let by_name = InstanceFilter {
        orchestrator: Some("@Account".to_owned()),
        ..InstanceFilter::default()
    };
    let what = "a listing by orchestrator `@Account` (an entity's) finds no orchestration";
    let found = c.ok(store.list_instances(&by_name, None, 100)).instances;
    c.expect(Ok(found.len()), 0, what);

    // By id: the entities of one type in key order (the orchestration whose id looks like
    // one is there too: a caller checks each record).
    let accounts = [
        "@Account@",
        "@Account@al",
        "@Account@alice",
        "@Account@bob",
        "@Account@zed",
    ];
    for limit in [1, 2, 5, 100] {
        let listed: Vec<String> = pages(&c, store, "@Account@", limit)
            .into_iter()
            .flatten()
            .collect();
        let what = format!("instances_with_prefix(\"@Account@\"), {limit} a page: in id order");
        c.expect(Ok(listed), page(&accounts), &what);
    }
    let what = "a key prefix: the keys that start with `al`";
    c.expect(
        Ok(pages(&c, store, "@Account@al", 10)),
        vec![page(&["@Account@al", "@Account@alice"])],
        what,
    );
    let what = "a page after an id before the prefix starts at the prefix";
    let from = c.ok(store.instances_with_prefix("@Cart@", Some("@Account@zed"), 10));
    let ids: Vec<&str> = from.iter().map(|(id, _)| id.as_str()).collect();
    c.expect(Ok(ids), vec!["@Cart@alice"], what);
    let what = "a page returns the records themselves";
    c.expect(
        Ok(from[0].1.clone()),
        entity("Cart", Status::Running, 4, b"[]"),
        what,
    );
    let what = "an empty prefix lists every instance in id order";
    let all: Vec<String> = pages(&c, store, "", 4).into_iter().flatten().collect();
    let mut want: Vec<String> = c
        .ok(store.instances())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    want.sort();
    c.expect(Ok(all), want, what);
    let what = "a prefix nothing has";
    c.expect(
        Ok(pages(&c, store, "@Nothing@", 3)),
        vec![Vec::<String>::new()],
        what,
    );

    // Removing an entity, and writing one again with a new creation time.
    c.commit(vec![Commit {
        instances_removed: vec!["@Account@bob".into(), "@Cart@alice".into()],
        ..Commit::default()
    }]);
    c.commit(vec![Commit {
        instances: vec![(
            "@Cart@alice".into(),
            entity("Cart", Status::Pending, 20, b""),
        )],
        ..Commit::default()
    }]);
    indexes_agree(&c, store, "two entities were removed, one written again");
    let what = "the entities after a removal";
    let listed: Vec<String> = pages(&c, store, "@Account@", 2)
        .into_iter()
        .flatten()
        .collect();
    c.expect(
        Ok(listed),
        page(&["@Account@", "@Account@al", "@Account@alice", "@Account@zed"]),
        what,
    );
    c.commit(vec![Commit {
        instances_removed: c
            .ok(store.instances())
            .into_iter()
            .map(|(id, _)| id)
            .collect(),
        ..Commit::default()
    }]);
    indexes_agree(&c, store, "everything was removed");
    c.expect(
        store.count_by_status(),
        zero_counts(),
        "removed all: no counts",
    );
}

pub(super) fn idle_entities_are_removed_and_no_other(store: &impl Store) {
    let c = Check::new("idle_entities_are_removed_and_no_other", store);
    let empty = || entity("E", Status::Running, 5, b"");
    let locked = InstanceRecord {
        parent: Some(ParentLink {
            instance: "transfer".into(),
            incarnation: 1,
            generation: 0,
            seq: 3,
        }),
        ..empty()
    };
    c.commit(vec![Commit {
        instances: vec![
            ("@E@idle".into(), empty()),
            ("@E@idle-too".into(), entity("E", Status::Pending, 6, b"")),
            ("@E@full".into(), entity("E", Status::Running, 5, b"1")),
            ("@E@locked".into(), locked),
            ("@E@addressed".into(), empty()),
            ("flow".into(), at("flow", Status::Pending, 5, 5)),
        ],
        enqueued: vec![(1, message("@E@addressed", 1))],
        ..Commit::default()
    }]);
    // Held by a live worker, which wrote it under its lease.
    let worker = c.ok(store.join(LONG));
    c.commit(vec![Commit {
        instances: vec![("@E@held".into(), empty())],
        lease: lease(worker, &[]),
        ..Commit::default()
    }]);
    let ids: Vec<String> = [
        "@E@idle",
        "@E@idle-too",
        "@E@full",
        "@E@locked",
        "@E@addressed",
        "@E@held",
        "flow",
        "@E@never-was",
    ]
    .map(str::to_owned)
    .to_vec();
    let what = "remove_idle_entities removes the entities with no state, no lock owner, no \
                holder and no work item";
    c.expect(
        store.remove_idle_entities(&ids),
        vec!["@E@idle".to_owned(), "@E@idle-too".to_owned()],
        what,
    );
    let left: Vec<String> = c
        .ok(store.instances())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let what = "the other records stay";
    c.expect(
        Ok(left),
        ["@E@addressed", "@E@full", "@E@held", "@E@locked", "flow"]
            .map(str::to_owned)
            .to_vec(),
        what,
    );
    indexes_agree(&c, store, "idle entities were removed");
    let what = "a second call finds nothing to remove";
    c.expect(store.remove_idle_entities(&ids), Vec::new(), what);
    // Once its message is consumed, the addressed one is idle too; once its worker leaves,
    // the held one.
    c.commit(vec![Commit {
        dequeued: vec![1],
        ..Commit::default()
    }]);
    c.ok(store.leave(worker));
    let what = "an entity whose message was consumed, and one whose worker left";
    c.expect(
        store.remove_idle_entities(&ids),
        vec!["@E@addressed".to_owned(), "@E@held".to_owned()],
        what,
    );
    // A sender that read the record before the removal and expects it is refused.
    let refused = store.commit(&[Commit {
        enqueued: vec![(2, message("@E@idle", 1))],
        expected: vec![("@E@idle".into(), Some(1))],
        ..Commit::default()
    }]);
    c.refused(
        refused,
        |e| matches!(e, StoreError::InstanceChanged { .. }),
        "a message expecting a removed entity's record",
    );
    c.expect(
        store.work_items(),
        vec![],
        "a refused commit enqueued nothing",
    );
}
