//! The admin API's listings: instances ([`list`], with [`row`] for one instance),
//! entities ([`entities()`]) and the store's totals ([`stats`]).

use std::collections::{BTreeMap, HashMap};

use durable_store::{Event, InstanceRecord, Status, StatusCounts, Store, WorkItem};

use super::filter::{EntityFilter, ListFilter, format_cursor};
use super::json;
use super::view::{EntityList, EntityRow, InstanceList, InstanceRow, Stats, StepView};
use crate::client::Client;
use crate::client::entity_query::entity_page;
use crate::error::Error;
use crate::position::Position;
use crate::runtime::entities::{self, ENTITY_MARKER};

/// A page of instances, with the counts by status.
pub(super) fn list(client: &Client, filter: &ListFilter) -> Result<InstanceList, Error> {
    let store = client.engine.store();
    let page = store.list_instances(
        &filter.store_filter()?,
        filter.cursor()?.as_ref(),
        filter.size(),
    )?;
    let instances = (page.instances.iter())
        .map(|(id, record)| row(store, id, record, None))
        .collect::<Result<_, Error>>()?;
    Ok(InstanceList {
        instances,
        next: page.next.as_ref().map(format_cursor),
        counts: counts(&store.count_by_status()?),
    })
}

/// Counts by status name, every status present.
fn counts(counts: &StatusCounts) -> BTreeMap<String, u64> {
    (counts.iter())
        .map(|(kind, n)| (kind.as_str().to_string(), *n))
        .collect()
}

/// The row of instance `id`, as `record` holds it. Where a failed or stalled one stopped
/// comes from `history` if given, else from the store's.
pub(super) fn row(
    store: &dyn Store,
    id: &str,
    record: &InstanceRecord,
    history: Option<&[Event]>,
) -> Result<InstanceRow, Error> {
    let message = match &record.status {
        Status::Failed { failure } | Status::Stalled { failure } => Some(failure.message.clone()),
        Status::Terminated { reason }
        | Status::Suspended { reason }
        | Status::DeadLettered { reason } => Some(reason.clone()),
        Status::Pending | Status::Running | Status::Completed { .. } => None,
    };
    let stopped_at = if matches!(
        record.status,
        Status::Failed { .. } | Status::Stalled { .. }
    ) {
        let position = match history {
            Some(history) => Position::of(history),
            None => Position::of(&store.history(id)?),
        };
        position.last.map(|step| StepView {
            step: step.step,
            operation: step.operation,
            site: json::site(&step.site),
        })
    } else {
        None
    };
    Ok(InstanceRow {
        id: id.to_string(),
        orchestrator: record.orchestrator.clone(),
        version: record.version,
        status: record.status.kind().as_str().to_string(),
        created_at_ms: record.created_ms,
        updated_at_ms: record.updated_ms,
        message,
        custom_status: record.custom_status.as_deref().and_then(json::optional),
        stopped_at,
    })
}

/// The store's totals. Scans the work queue.
pub(super) fn stats(client: &Client) -> Result<Stats, Error> {
    let store = client.engine.store();
    let counts = counts(&store.count_by_status()?);
    let items = store.work_items()?;
    let now = client.engine.now_ms();
    // A message or an activity task carries no time: it has waited at least since its
    // instance's record last changed (read once per instance).
    let mut since: HashMap<&str, Option<u64>> = HashMap::new();
    let mut oldest: Option<u64> = None;
    for (_, item) in &items {
        let at = match item {
            WorkItem::Timer { fire_at_ms, .. } => (*fire_at_ms <= now).then_some(*fire_at_ms),
            WorkItem::Message { instance, .. } => updated(store, &mut since, instance)?,
            WorkItem::Activity(task) => updated(store, &mut since, &task.instance)?,
        };
        if let Some(at) = at {
            oldest = Some(oldest.map_or(at, |oldest| oldest.min(at)));
        }
    }
    Ok(Stats {
        counts,
        work_queued: items.len() as u64,
        oldest_pending_at_ms: oldest,
    })
}

/// When the record of `instance` last changed, read once per instance into `since`.
fn updated<'a>(
    store: &dyn Store,
    since: &mut HashMap<&'a str, Option<u64>>,
    instance: &'a str,
) -> Result<Option<u64>, Error> {
    if let Some(at) = since.get(instance) {
        return Ok(*at);
    }
    let at = store.instance(instance)?.map(|record| record.updated_ms);
    since.insert(instance, at);
    Ok(at)
}

/// A page of entities, of every type or of the one `filter` names.
pub(super) fn entities(client: &Client, filter: &EntityFilter) -> Result<EntityList, Error> {
    let prefix = match &filter.name {
        Some(name) => format!(
            "{}{ENTITY_MARKER}{}",
            entities::marker(name),
            filter.key_prefix.as_deref().unwrap_or("")
        ),
        None => ENTITY_MARKER.to_string(),
    };
    let (found, next) = entity_page(
        client.engine.store(),
        &prefix,
        filter.after.clone(),
        filter.size(),
        entities::is_entity,
    )?;
    let entities = (found.into_iter())
        .map(|(entity, record)| EntityRow {
            name: entity.name().to_string(),
            key: entity.key().to_string(),
            state: json::optional(&record.input),
            locked_by: record.parent.map(|owner| owner.instance),
            updated_at_ms: record.updated_ms,
        })
        .collect();
    Ok(EntityList { entities, next })
}
