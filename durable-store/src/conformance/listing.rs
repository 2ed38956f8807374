//! Checks of the indexed queries: [`Store::list_instances`] pages and filters,
//! [`Store::count_by_status`] and [`Store::live_instances`], each compared after every
//! kind of status change with what a scan of [`Store::instances`] finds.

use super::Check;
use super::records::{append, events, record};
use crate::query::{InstanceCursor, InstanceFilter, StatusCounts, is_entity, zero_counts};
use crate::record::{Commit, Failure, FailureKind, InstanceRecord, Status, StatusKind};
use crate::store::Store;

/// A record of `orchestrator` in `status`, created at `created_ms`, last changed at
/// `updated_ms`.
pub(super) fn at(
    orchestrator: &str,
    status: Status,
    created_ms: u64,
    updated_ms: u64,
) -> InstanceRecord {
    InstanceRecord {
        created_ms,
        updated_ms,
        ..record(orchestrator, status, 0)
    }
}

fn failure() -> Failure {
    Failure {
        kind: FailureKind::Panicked,
        message: "boom".to_owned(),
    }
}

fn completed() -> Status {
    Status::Completed { output: vec![7] }
}

/// Every page of `filter`, `limit` a page, each page's cursor passed to the next.
fn all_pages<S: Store + ?Sized>(
    c: &Check<'_, S>,
    store: &S,
    filter: &InstanceFilter,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<InstanceCursor> = None;
    loop {
        let page = c.ok(store.list_instances(filter, after.as_ref(), limit));
        assert!(
            page.instances.len() <= limit.max(1),
            "conformance `{}`: a page of limit {limit} held {} instances",
            c.name,
            page.instances.len()
        );
        pages.push(page.instances.into_iter().map(|(id, _)| id).collect());
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
        assert!(
            pages.len() < 1_000,
            "conformance `{}`: pages never end",
            c.name
        );
    }
}

/// Asserts that listings, counts and the live instances agree with a scan of every
/// record: whatever commits came before, the indexes follow the records.
/// Entities' records ([`is_entity`]) are in none of these views: they are left out of
/// the scan too.
pub(super) fn indexes_agree<S: Store + ?Sized>(c: &Check<'_, S>, store: &S, after_what: &str) {
    let mut all = c.ok(store.instances());
    all.retain(|(_, record)| !is_entity(record));
    all.sort_by_key(|(id, record)| InstanceCursor::of(id, record));
    for limit in [1, 2, 100] {
        let pages = all_pages(c, store, &InstanceFilter::default(), limit);
        let listed: Vec<String> = pages.into_iter().flatten().collect();
        let want: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        let what = format!(
            "after {after_what}: listing every instance, {limit} a page, should give every \
             record in creation order"
        );
        c.expect(Ok(listed), want, &what);
    }
    let mut counts: StatusCounts = zero_counts();
    for (_, record) in &all {
        *counts.entry(record.status.kind()).or_default() += 1;
    }
    let what = format!("after {after_what}: count_by_status() should count every record");
    c.expect(store.count_by_status(), counts, &what);
    let live: Vec<_> = all
        .iter()
        .filter(|(_, record)| !record.status.is_terminal())
        .cloned()
        .collect();
    let what = format!("after {after_what}: live_instances() should be the unfinished records");
    c.expect(store.live_instances(), live, &what);
}

pub(super) fn listings_page_and_filter(store: &impl Store) {
    let c = Check::new("listings_page_and_filter", store);
    let instances = vec![
        ("e".to_owned(), at("ship", Status::Running, 10, 10)),
        ("d".to_owned(), at("order", Status::Running, 10, 10)),
        ("c".to_owned(), at("order", completed(), 5, 50)),
        ("b".to_owned(), at("order", Status::Pending, 20, 20)),
        ("a".to_owned(), at("ship", completed(), 30, 40)),
        (
            "f".to_owned(),
            at("order", Status::Failed { failure: failure() }, 1, 60),
        ),
        (
            "g".to_owned(),
            at("order", Status::Suspended { reason: "r".into() }, 40, 40),
        ),
    ];
    c.commit(vec![Commit {
        instances,
        ..Commit::default()
    }]);
    indexes_agree(&c, store, "seven instances were written");
    let ids = |filter: InstanceFilter, limit| -> Vec<Vec<String>> {
        all_pages(&c, store, &filter, limit)
    };
    let page = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    let what = "every instance, 3 a page: creation order, then id";
    c.expect(
        Ok(ids(InstanceFilter::default(), 3)),
        vec![page(&["f", "c", "d"]), page(&["e", "b", "a"]), page(&["g"])],
        what,
    );
    let running = InstanceFilter {
        statuses: vec![StatusKind::Running, StatusKind::Pending],
        ..InstanceFilter::default()
    };
    let what = "running and pending, 2 a page";
    c.expect(
        Ok(ids(running.clone(), 2)),
        vec![page(&["d", "e"]), page(&["b"])],
        what,
    );
    let what = "a page that holds the last match says there is no next page";
    c.expect(Ok(ids(running, 3)), vec![page(&["d", "e", "b"])], what);
    let orders = InstanceFilter {
        orchestrator: Some("order".to_owned()),
        ..InstanceFilter::default()
    };
    let what = "orchestrator `order`, 2 a page";
    c.expect(
        Ok(ids(orders.clone(), 2)),
        vec![page(&["f", "c"]), page(&["d", "b"]), page(&["g"])],
        what,
    );
    let what = "orchestrator `order`, running";
    c.expect(
        Ok(ids(
            InstanceFilter {
                statuses: vec![StatusKind::Running],
                ..orders.clone()
            },
            10,
        )),
        vec![page(&["d"])],
        what,
    );
    let what = "an orchestrator no instance runs";
    c.expect(
        Ok(ids(
            InstanceFilter {
                orchestrator: Some("orde".to_owned()),
                ..InstanceFilter::default()
            },
            10,
        )),
        vec![vec![]],
        what,
    );
    let what = "created from 10 (included) before 30 (excluded)";
    c.expect(
        Ok(ids(
            InstanceFilter {
                created_from_ms: Some(10),
                created_before_ms: Some(30),
                ..InstanceFilter::default()
            },
            2,
        )),
        vec![page(&["d", "e"]), page(&["b"])],
        what,
    );
    let what = "finished before 55: finished ones only, by when they finished";
    c.expect(
        Ok(ids(
            InstanceFilter {
                finished_before_ms: Some(55),
                ..InstanceFilter::default()
            },
            10,
        )),
        vec![page(&["c", "a"])],
        what,
    );
    let what = "a cursor past a created_from bound resumes at the cursor";
    let from_d = c.ok(store.list_instances(
        &InstanceFilter {
            created_from_ms: Some(5),
            ..InstanceFilter::default()
        },
        Some(&InstanceCursor {
            created_ms: 10,
            id: "d".to_owned(),
        }),
        2,
    ));
    let listed: Vec<_> = from_d.instances.iter().map(|(id, _)| id.as_str()).collect();
    c.expect(Ok(listed), vec!["e", "b"], what);
    let what = "a page returns the records themselves";
    c.expect(
        Ok(from_d.instances[0].1.clone()),
        at("ship", Status::Running, 10, 10),
        what,
    );
    // A page's cursor still works once the instance it names is gone.
    let first = c.ok(store.list_instances(&InstanceFilter::default(), None, 2));
    c.commit(vec![Commit {
        instances_removed: vec!["c".to_owned()],
        ..Commit::default()
    }]);
    let next = c.ok(store.list_instances(&InstanceFilter::default(), first.next.as_ref(), 2));
    let listed: Vec<_> = next.instances.iter().map(|(id, _)| id.as_str()).collect();
    let what = "the page after a removed instance's cursor";
    c.expect(Ok(listed), vec!["d", "e"], what);
    indexes_agree(&c, store, "a removal");
}

pub(super) fn indexes_follow_every_status_change(store: &impl Store) {
    let c = Check::new("indexes_follow_every_status_change", store);
    let flow = |status| at("flow", status, 100, 100);
    let steps: Vec<(&str, Vec<Commit>)> = vec![
        (
            "a start",
            vec![Commit {
                instances: vec![("x".into(), flow(Status::Pending))],
                ..Commit::default()
            }],
        ),
        (
            "a first turn",
            vec![Commit {
                instances: vec![("x".into(), flow(Status::Running))],
                history: vec![append("x", 0, events("x", 0..2))],
                ..Commit::default()
            }],
        ),
        (
            "a turn that keeps the status",
            vec![Commit {
                instances: vec![("x".into(), at("flow", Status::Running, 100, 150))],
                ..Commit::default()
            }],
        ),
        (
            "a suspend and a resume in one call",
            vec![
                Commit {
                    instances: vec![("x".into(), flow(Status::Suspended { reason: "r".into() }))],
                    ..Commit::default()
                },
                Commit {
                    instances: vec![("x".into(), flow(Status::Running))],
                    ..Commit::default()
                },
            ],
        ),
        (
            "a continue-as-new",
            vec![Commit {
                histories_removed: vec![("x".into(), 2)],
                instances: vec![("x".into(), flow(Status::Running))],
                history: vec![append("x", 0, events("x", 0..1))],
                ..Commit::default()
            }],
        ),
        (
            "a stall, then a second instance",
            vec![
                Commit {
                    instances: vec![("x".into(), flow(Status::Stalled { failure: failure() }))],
                    ..Commit::default()
                },
                Commit {
                    instances: vec![("y".into(), at("other", Status::Pending, 50, 50))],
                    ..Commit::default()
                },
            ],
        ),
        (
            "a termination",
            vec![Commit {
                instances: vec![("x".into(), flow(Status::Terminated { reason: "r".into() }))],
                ..Commit::default()
            }],
        ),
        (
            "a restart",
            vec![Commit {
                histories_removed: vec![("x".into(), 1)],
                instances: vec![("x".into(), flow(Status::Pending))],
                ..Commit::default()
            }],
        ),
        (
            "a failure and a completion",
            vec![Commit {
                instances: vec![
                    ("x".into(), flow(Status::Failed { failure: failure() })),
                    ("y".into(), at("other", completed(), 50, 60)),
                ],
                ..Commit::default()
            }],
        ),
        (
            "a purge and a new start of the id in one call",
            vec![
                Commit {
                    histories_removed: vec![("x".into(), 0)],
                    instances_removed: vec!["x".into()],
                    ..Commit::default()
                },
                Commit {
                    instances: vec![("x".into(), at("flow", Status::Pending, 200, 200))],
                    ..Commit::default()
                },
            ],
        ),
        (
            "a removal and a write of one id in one commit",
            vec![Commit {
                instances_removed: vec!["y".into()],
                instances: vec![("y".into(), at("other", Status::Running, 50, 70))],
                ..Commit::default()
            }],
        ),
        (
            "a purge of both",
            vec![Commit {
                instances_removed: vec!["x".into(), "y".into(), "never-was".into()],
                ..Commit::default()
            }],
        ),
    ];
    for (what, commits) in steps {
        c.commit(commits);
        indexes_agree(&c, store, what);
    }
    c.expect(
        store.count_by_status(),
        zero_counts(),
        "purged all: no counts",
    );
}
