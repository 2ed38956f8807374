//! Checks that claims respect orchestrator versions ([`ClaimFilter::versions`]): in a
//! rolling deploy, a worker that has only version 1 of an orchestrator leaves the instances
//! of version 2 (and their messages and timers, and the stalled ones) to a worker that has
//! it.

use super::Check;
use super::leases::{LONG, holdings, item_ids};
use super::records::{message, record, task, timer};
use crate::lease::{ClaimFilter, Holding};
use crate::record::{Commit, Failure, FailureKind, InstanceRecord, Status};
use crate::store::Store;

/// A record of version `version` of `orchestrator`.
fn versioned(orchestrator: &str, version: u32, status: Status) -> InstanceRecord {
    InstanceRecord {
        version,
        ..record(orchestrator, status, 0)
    }
}

/// What a worker with versions `versions` of `flow` and activity `charge` claims.
fn worker_with(versions: &[u32]) -> ClaimFilter {
    ClaimFilter::default()
        .orchestrators(vec!["flow".into()])
        .versions(versions.iter().map(|v| ("flow".to_owned(), *v)).collect())
        .activities(vec!["charge".into()])
}

pub(super) fn claims_take_only_the_versions_the_worker_has(store: &impl Store) {
    let c = Check::new("claims_take_only_the_versions_the_worker_has", store);
    let stalled = || Status::Stalled {
        failure: Failure {
            kind: FailureKind::Unregistered {
                name: "flow".into(),
            },
            message: "no code for this version".into(),
        },
    };
    c.commit(vec![Commit {
        instances: vec![
            ("a1".into(), versioned("flow", 1, Status::Running)),
            ("a2".into(), versioned("flow", 2, Status::Running)),
            ("s1".into(), versioned("flow", 1, stalled())),
            ("s2".into(), versioned("flow", 2, stalled())),
        ],
        enqueued: vec![
            (1, message("a1", 1)),
            (2, message("a2", 1)),
            (3, timer("a2", 2)),
            (4, task("a2", 3)),
        ],
        ..Commit::default()
    }]);
    let (old, new) = (c.ok(store.join(LONG)), c.ok(store.join(LONG)));
    let first = c.ok(store.claim(old, &worker_with(&[1])));
    let what = "a worker with version 1 of `flow` takes the message of the version 1 instance \
                and the `charge` task (activities go to any worker that has them), not the \
                message or timer of the version 2 instance";
    c.expect(Ok(item_ids(&first)), vec![1, 4], what);
    let what = "a worker with version 1 of `flow` claims the version 1 instances (the running \
                one and the stalled one) and leaves the version 2 ones, naming `a2` only for \
                its task";
    let want = vec![
        ("a1".to_owned(), Holding::Claimed),
        ("a2".to_owned(), Holding::Other),
        ("s1".to_owned(), Holding::Claimed),
    ];
    c.expect(Ok(holdings(&first)), want, what);
    let what = "a second claim by the worker with version 1 takes nothing: what is left is \
                of version 2";
    let again = c.ok(store.claim(old, &worker_with(&[1])));
    c.expect(Ok(again.is_empty()), true, what);

    let second = c.ok(store.claim(new, &worker_with(&[2])));
    let what = "a worker with version 2 takes the message and timer of the version 2 \
                instance that the worker with version 1 left";
    c.expect(Ok(item_ids(&second)), vec![2, 3], what);
    let what = "a worker with version 2 claims the version 2 instances, stalled or not";
    let want = vec![
        ("a2".to_owned(), Holding::Claimed),
        ("s2".to_owned(), Holding::Claimed),
    ];
    c.expect(Ok(holdings(&second)), want, what);

    // A worker with both versions, once the others left, takes everything over.
    c.ok(store.leave(old));
    c.ok(store.leave(new));
    let both = c.ok(store.join(LONG));
    let third = c.ok(store.claim(both, &worker_with(&[1, 2])));
    let what = "a worker with both versions takes over what the workers that left held";
    c.expect(Ok(item_ids(&third)), vec![1, 2, 3, 4], what);
    let ids: Vec<String> = holdings(&third).into_iter().map(|(id, _)| id).collect();
    c.expect(
        Ok(ids),
        vec!["a1".into(), "a2".into(), "s1".into(), "s2".into()],
        what,
    );

    // Without a version filter every version is taken (a store one worker holds alone:
    // what it cannot run, its runtime decides).
    c.ok(store.leave(both));
    let any = c.ok(store.join(LONG));
    let all = ClaimFilter::default().orchestrators(vec!["flow".into()]);
    let fourth = c.ok(store.claim(any, &all));
    let what = "a filter naming orchestrators but no versions takes every version";
    c.expect(Ok(item_ids(&fourth)), vec![1, 2, 3, 4], what);
}
