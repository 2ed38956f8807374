//! Paged, filtered listing of instances and counts by status: what [`Store::list_instances`],
//! [`Store::count_by_status`], [`Store::live_instances`] and
//! [`Store::instances_with_prefix`] take and return, and their default implementations on
//! top of [`Store::instances`] (full scans, for stores that have no indexes).
//!
//! Listings run in creation order (`created_ms`, then id): a page resumes after the
//! [`InstanceCursor`] of the last instance of the page before, so instances created or
//! removed meanwhile do not shift it.
//!
//! # Entities are not orchestrations
//!
//! An entity (`durable_core`'s `#[entity]`) is stored as an instance whose `orchestrator`
//! is its name after [`ENTITY_MARKER`] (`@Account`), under the id `@Account@alice`
//! ([`is_entity`]). The listings by status, the counts and the live instances are views
//! of orchestrations: they leave entities out, and each store keeps its indexes and
//! counters of orchestrations only, so an orchestration's listing never steps over
//! entities. Entities are listed by id, through [`Store::instances_with_prefix`] (the
//! primary key of every store): in key order, with a key prefix for free.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::record::{InstanceRecord, StatusKind, WorkItem};
use crate::store::Store;

/// Which instances [`Store::list_instances`] returns: every condition set must hold.
///
/// # Examples
///
/// ```
/// use durable_store::{InstanceFilter, StatusKind};
///
/// let finished_long_ago = InstanceFilter {
///     statuses: vec![StatusKind::Completed, StatusKind::Failed],
///     finished_before_ms: Some(1_700_000_000_000),
///     ..InstanceFilter::default()
/// };
/// assert!(finished_long_ago.orchestrator.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only these statuses; every status if empty.
    pub statuses: Vec<StatusKind>,
    /// Only instances of the orchestrator of this registered name.
    pub orchestrator: Option<String>,
    /// Only instances created at or after this time, ms since the Unix epoch.
    pub created_from_ms: Option<u64>,
    /// Only instances created before this time, ms since the Unix epoch.
    pub created_before_ms: Option<u64>,
    /// Only finished instances ([`StatusKind::is_terminal`]) whose record last changed
    /// (`updated_ms`: when they finished) before this time, ms since the Unix epoch.
    pub finished_before_ms: Option<u64>,
}

/// What the `orchestrator` of an entity's record starts with: `@Account` for the
/// entities of type `Account`. No orchestrator name starts with it.
pub const ENTITY_MARKER: char = '@';

/// Whether `record` is an entity's (its `orchestrator` starts with [`ENTITY_MARKER`]):
/// a record that listings by status, counts and the live instances leave out.
pub fn is_entity(record: &InstanceRecord) -> bool {
    record.orchestrator.starts_with(ENTITY_MARKER)
}

/// Whether `record` is an entity's with nothing in it ([`Store::remove_idle_entities`]
/// also asks that no worker holds it and no work item is addressed to it): no state
/// (never written, or deleted), not locked (`parent`, which holds an entity's lock owner,
/// is empty).
pub fn is_empty_entity(record: &InstanceRecord) -> bool {
    is_entity(record) && record.input.is_empty() && record.parent.is_none()
}

/// The instance `item` is addressed to.
pub(crate) fn addressee(item: &WorkItem) -> &str {
    match item {
        WorkItem::Message { instance, .. } | WorkItem::Timer { instance, .. } => instance,
        WorkItem::Activity(task) => &task.instance,
    }
}

impl InstanceFilter {
    /// Whether `record` passes every condition. An entity's record ([`is_entity`])
    /// passes none: it is not an orchestration.
    pub fn matches(&self, record: &InstanceRecord) -> bool {
        let kind = record.status.kind();
        !is_entity(record)
            && (self.statuses.is_empty() || self.statuses.contains(&kind))
            && self
                .orchestrator
                .as_ref()
                .is_none_or(|o| *o == record.orchestrator)
            && self.created_from_ms.is_none_or(|t| record.created_ms >= t)
            && self.created_before_ms.is_none_or(|t| record.created_ms < t)
            && self
                .finished_before_ms
                .is_none_or(|t| kind.is_terminal() && record.updated_ms < t)
    }

    /// The statuses the filter takes, each once, in [`StatusKind::ALL`] order (every one
    /// for an empty list).
    pub fn status_kinds(&self) -> Vec<StatusKind> {
        StatusKind::ALL
            .into_iter()
            .filter(|kind| self.statuses.is_empty() || self.statuses.contains(kind))
            .filter(|kind| self.finished_before_ms.is_none() || kind.is_terminal())
            .collect()
    }
}

/// Where a listing resumes: after the instance created at `created_ms` with id `id` (the
/// last instance of the page before), in creation order, then id order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceCursor {
    /// Creation time of the last instance listed, ms since the Unix epoch.
    pub created_ms: u64,
    /// Its id.
    pub id: String,
}

impl InstanceCursor {
    /// The cursor of instance `id` with record `record`: a page after it starts with the
    /// instance that follows it.
    pub fn of(id: &str, record: &InstanceRecord) -> Self {
        Self {
            created_ms: record.created_ms,
            id: id.to_owned(),
        }
    }
}

/// One page of [`Store::list_instances`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstancePage {
    /// The instances, in creation order, then id order.
    pub instances: Vec<(String, InstanceRecord)>,
    /// Where the next page starts; `None` if no instance matching the filter follows.
    pub next: Option<InstanceCursor>,
}

/// How many instances a store holds in each status: every [`StatusKind`], zeros included.
pub type StatusCounts = BTreeMap<StatusKind, u64>;

/// The statuses of instances that have not finished: the ones recovery looks at.
pub const LIVE_STATUSES: [StatusKind; 5] = [
    StatusKind::Pending,
    StatusKind::Running,
    StatusKind::Suspended,
    StatusKind::Stalled,
    StatusKind::DeadLettered,
];

/// Every kind at 0.
pub(crate) fn zero_counts() -> StatusCounts {
    StatusKind::ALL.into_iter().map(|kind| (kind, 0)).collect()
}

/// The default [`Store::list_instances`]: a scan of [`Store::instances`].
pub(crate) fn list_by_scan<S: Store + ?Sized>(
    store: &S,
    filter: &InstanceFilter,
    after: Option<&InstanceCursor>,
    limit: usize,
) -> Result<InstancePage, StoreError> {
    let mut found: Vec<(InstanceCursor, InstanceRecord)> = store
        .instances()?
        .into_iter()
        .filter(|(_, record)| filter.matches(record))
        .map(|(id, record)| (InstanceCursor::of(&id, &record), record))
        .filter(|(cursor, _)| after.is_none_or(|after| cursor > after))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(page_of(found, limit))
}

/// The first `limit` (at least 1) of `sorted`, and the cursor of the last one if more
/// follow.
pub(crate) fn page_of(
    mut sorted: Vec<(InstanceCursor, InstanceRecord)>,
    limit: usize,
) -> InstancePage {
    let limit = limit.max(1);
    let more = sorted.len() > limit;
    sorted.truncate(limit);
    let next = more.then(|| sorted.last().map(|(cursor, _)| cursor.clone()));
    InstancePage {
        instances: sorted
            .into_iter()
            .map(|(cursor, record)| (cursor.id, record))
            .collect(),
        next: next.flatten(),
    }
}

/// The default [`Store::count_by_status`]: a scan of [`Store::instances`].
pub(crate) fn count_by_scan<S: Store + ?Sized>(store: &S) -> Result<StatusCounts, StoreError> {
    let mut counts = zero_counts();
    for (_, record) in store.instances()? {
        if is_entity(&record) {
            continue;
        }
        *counts.entry(record.status.kind()).or_default() += 1;
    }
    Ok(counts)
}

/// The default [`Store::live_instances`]: a scan of [`Store::instances`], sorted by
/// creation.
pub(crate) fn live_by_scan<S: Store + ?Sized>(
    store: &S,
) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
    let mut live = store.instances()?;
    live.retain(|(_, record)| !record.status.is_terminal() && !is_entity(record));
    // In creation order, as the trait says (`instances` is in id order).
    live.sort_by_cached_key(|(id, record)| InstanceCursor::of(id, record));
    Ok(live)
}

/// The default [`Store::instances_with_prefix`]: a scan of [`Store::instances`] (in id
/// order).
pub(crate) fn prefix_by_scan<S: Store + ?Sized>(
    store: &S,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
    Ok(store
        .instances()?
        .into_iter()
        .filter(|(id, _)| id.starts_with(prefix) && after.is_none_or(|after| id.as_str() > after))
        .take(limit)
        .collect())
}
