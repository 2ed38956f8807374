//! A conformance suite for [`Store`] implementations.
//!
//! Call [`run`] (and, for a store on disk, [`run_reopen`]) from a test; each check panics
//! with a message naming the check and what the store did wrong.
//!
//! # Examples
//!
//! ```
//! durable_store::conformance::run(durable_store::MemoryStore::default);
//! ```

mod commits;
mod entities;
mod fences;
mod leases;
mod limit_faults;
mod limits;
mod listing;
mod order;
mod records;
mod refused_keys;
mod versions;

use std::fmt::Debug;
use std::path::Path;

use self::commits::{
    commit_round_trips, empty_store_reads_nothing, expectations_refuse_the_whole_call,
    one_call_applies_every_commit_in_order, progress_puts_overwrites_and_deletes,
    removals_apply_before_writes,
};
use self::entities::{
    entities_are_listed_by_id_apart_from_orchestrations, idle_entities_are_removed_and_no_other,
};
use self::fences::{
    history_appends_start_where_the_history_ends, lapsed_leases_are_taken_over_and_fenced,
};
use self::leases::{
    claims_keep_their_limits, claims_take_what_no_live_worker_holds,
    concurrent_claims_never_take_the_same_thing, released_instances_are_left_for_a_claim,
    waiting_for_work_wakes_on_unclaimed_work, work_ids_are_reserved_apart,
    workers_join_renew_and_leave,
};
use self::limit_faults::{
    a_lapsed_workers_slots_free_once_and_its_late_result_is_refused,
    equal_priorities_go_in_id_order_across_activities, no_slot_stays_taken_once_the_work_is_done,
};
use self::limits::{
    a_concurrency_limit_counts_the_tasks_live_workers_hold,
    a_max_running_limit_starts_pending_instances_in_creation_order,
    a_rate_limit_counts_starts_per_window, concurrent_claims_keep_a_concurrency_limit,
    finishing_a_limited_instance_wakes_the_waiting_workers,
    removing_a_held_task_wakes_the_waiting_workers, waiting_tasks_go_higher_priority_first,
};
use self::listing::{indexes_agree, indexes_follow_every_status_change, listings_page_and_filter};
use self::order::{
    histories_keep_order_and_stay_apart, instances_are_in_id_order, work_queue_is_in_id_order,
};
use self::records::{append, events, message, record, task};
use self::refused_keys::refused_keys_write_nothing;
use self::versions::claims_take_only_the_versions_the_worker_has;
use crate::error::StoreError;
use crate::record::{Commit, Status};
use crate::store::Store;

/// Runs every check, each on a fresh store from `make`.
///
/// The lease checks call the store from several threads at once, and wait for a lease of
/// 1.5 s to lapse (by the store's clock), for `wait_for_work` and for a rate limit's
/// window: about 3.5 s in all.
///
/// # Panics
///
/// When the store breaks the contract of [`Store`]; the message names the check.
pub fn run<S: Store>(make: impl Fn() -> S) {
    empty_store_reads_nothing(&make());
    commit_round_trips(&make());
    histories_keep_order_and_stay_apart(&make());
    work_queue_is_in_id_order(&make());
    progress_puts_overwrites_and_deletes(&make());
    one_call_applies_every_commit_in_order(&make());
    expectations_refuse_the_whole_call(&make());
    instances_are_in_id_order(&make());
    removals_apply_before_writes(&make());
    refused_keys_write_nothing(&make());
    listings_page_and_filter(&make());
    indexes_follow_every_status_change(&make());
    entities_are_listed_by_id_apart_from_orchestrations(&make());
    idle_entities_are_removed_and_no_other(&make());
    history_appends_start_where_the_history_ends(&make());
    workers_join_renew_and_leave(&make());
    claims_take_what_no_live_worker_holds(&make());
    claims_keep_their_limits(&make());
    released_instances_are_left_for_a_claim(&make());
    claims_take_only_the_versions_the_worker_has(&make());
    concurrent_claims_never_take_the_same_thing(&make());
    work_ids_are_reserved_apart(&make());
    waiting_for_work_wakes_on_unclaimed_work(&make());
    lapsed_leases_are_taken_over_and_fenced(&make());
    a_concurrency_limit_counts_the_tasks_live_workers_hold(&make());
    waiting_tasks_go_higher_priority_first(&make());
    a_rate_limit_counts_starts_per_window(&make());
    concurrent_claims_keep_a_concurrency_limit(&make());
    removing_a_held_task_wakes_the_waiting_workers(&make());
    a_max_running_limit_starts_pending_instances_in_creation_order(&make());
    finishing_a_limited_instance_wakes_the_waiting_workers(&make());
    equal_priorities_go_in_id_order_across_activities(&make());
    a_lapsed_workers_slots_free_once_and_its_late_result_is_refused(&make());
    no_slot_stays_taken_once_the_work_is_done(&make());
}

/// Checks that what was committed survives dropping the store and opening `dir` again, twice.
///
/// `dir` must be empty or absent; `open` opens the store in it.
///
/// # Panics
///
/// When data is lost or changed across a reopen.
pub fn run_reopen<S: Store>(dir: &Path, open: impl Fn(&Path) -> S) {
    let done = || record("flow", Status::Completed { output: vec![1] }, 4);
    {
        let store = open(dir);
        let c = Check::new("run_reopen: before the first reopen", &store);
        c.commit(vec![
            Commit {
                instances: vec![("x".into(), record("flow", Status::Running, 3))],
                history: vec![append("x", 0, events("x", 0..3))],
                enqueued: vec![(1, message("x", 9)), (2, task("x", 1))],
                progress: vec![("x/1".into(), Some(b"half".to_vec()))],
                ..Commit::default()
            },
            Commit {
                instances: vec![("y".into(), record("flow", Status::Pending, 0))],
                ..Commit::default()
            },
        ]);
        c.commit(vec![Commit {
            history: vec![append("x", 3, events("x", 3..4))],
            dequeued: vec![1],
            ..Commit::default()
        }]);
    }
    {
        let store = open(dir);
        let c = Check::new("run_reopen: after the first reopen", &store);
        let records = vec![
            ("x".to_owned(), record("flow", Status::Running, 3)),
            ("y".to_owned(), record("flow", Status::Pending, 0)),
        ];
        c.expect(
            store.instances(),
            records,
            "instances() lost or changed records",
        );
        c.expect(
            store.history("x"),
            events("x", 0..4),
            "history(\"x\") changed",
        );
        c.expect(
            store.work_items(),
            vec![(2, task("x", 1))],
            "work_items() changed",
        );
        c.expect(
            store.progress("x/1"),
            Some(b"half".to_vec()),
            "progress changed",
        );
        indexes_agree(&c, &store, "the first reopen");
        c.commit(vec![Commit {
            instances: vec![("x".into(), done())],
            dequeued: vec![2],
            progress: vec![("x/1".into(), None)],
            ..Commit::default()
        }]);
    }
    let store = open(dir);
    let c = Check::new("run_reopen: after the second reopen", &store);
    c.expect(
        store.instance("x"),
        Some(done()),
        "instance(\"x\") lost its update",
    );
    c.expect(
        store.history("x"),
        events("x", 0..4),
        "history(\"x\") changed",
    );
    c.expect(store.work_items(), vec![], "dequeued work came back");
    c.expect(store.progress("x/1"), None, "deleted progress came back");
    indexes_agree(&c, &store, "the second reopen");
    let live: Vec<_> = c
        .ok(store.live_instances())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let what = "live_instances() after a reopen: the pending one, not the completed one";
    c.expect(Ok(live), vec!["y".to_owned()], what);
}

/// One check of the suite on one store: makes its calls and names it when one goes wrong.
pub(super) struct Check<'a, S: ?Sized> {
    pub(super) name: &'static str,
    store: &'a S,
}

impl<'a, S: Store + ?Sized> Check<'a, S> {
    pub(super) fn new(name: &'static str, store: &'a S) -> Self {
        Self { name, store }
    }

    /// Commits `commits` in one call.
    #[track_caller]
    pub(super) fn commit(&self, commits: Vec<Commit>) {
        self.ok(self.store.commit(&commits));
    }

    #[track_caller]
    pub(super) fn ok<T>(&self, result: Result<T, StoreError>) -> T {
        result.unwrap_or_else(|e| {
            panic!(
                "conformance `{}`: the store returned an error: {e}",
                self.name
            )
        })
    }

    /// Asserts that a call failed as `want` says; `how` says what was called.
    #[track_caller]
    pub(super) fn refused<T: Debug>(
        &self,
        got: Result<T, StoreError>,
        want: impl Fn(&StoreError) -> bool,
        how: &str,
    ) {
        match got {
            Err(e) if want(&e) => {}
            other => panic!(
                "conformance `{}`: {how} should be refused, got {other:?}",
                self.name
            ),
        }
    }

    /// Asserts that a read returned `want`; `what` says what was read.
    #[track_caller]
    pub(super) fn expect<T: PartialEq + Debug>(
        &self,
        got: Result<T, StoreError>,
        want: T,
        what: &str,
    ) {
        let got = self.ok(got);
        assert!(
            got == want,
            "conformance `{}`: {what}\n   got: {got:?}\n  want: {want:?}",
            self.name
        );
    }
}
