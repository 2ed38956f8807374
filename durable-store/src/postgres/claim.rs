//! [`Store::claim`](crate::Store::claim) on PostgreSQL: the semantics of `Leases::claim`
//! (`lease/local.rs`, the reference), in one transaction.
//!
//! 1. Expired leases are deleted (waiting for a commit that still holds one: see
//!    `apply.rs`), what their workers held is released, and the claiming worker's lease is
//!    checked.
//! 2. The unheld work items are read in id order, a page at a time, with the instances
//!    they are for, and chosen as the reference chooses them.
//! 3. The chosen instances, then the chosen items, are taken with `FOR UPDATE SKIP LOCKED`
//!    and re-checked as unheld: what a worker claiming at the same moment took is left to
//!    it (an instance lost so is reported as [`Holding::Other`], and its messages and
//!    timers are not taken).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use postgres::Row;

use super::commit::{work_key, worker_key};
use super::connect::{Conn, Target};
use super::pool::Failure;
use super::read::instance_row;
use crate::error::StoreError;
use crate::lease::{Claim, ClaimFilter, ClaimedInstance, Holding, WorkerId};
use crate::record::{InstanceRecord, StatusKind, WorkId, WorkItem, decode};

/// Deletes the expired leases, and says whether `$1`'s lease is live and which workers'
/// leases were deleted (NULL: none), whose holdings [`RELEASE_GONE`] then releases.
///
/// `$1`'s lease row is locked (`FOR KEY SHARE`, as a commit locks it: see `apply.rs`) for
/// the claim's transaction: the worker leaving meanwhile (`lease.rs`) waits for the claim
/// and then releases what it took, or the claim waits for it and finds the lease gone.
/// Read unlocked, a claim that had found its lease live took instances and messages after
/// the worker's holdings were released: held by a worker that no longer existed, no claim
/// took them again.
const START: &str = "WITH gone AS ( \
        DELETE FROM durable.workers WHERE expires_at <= now() RETURNING id) \
    SELECT EXISTS (SELECT FROM durable.workers WHERE id = $1 AND expires_at > now() \
            FOR KEY SHARE), \
        (SELECT array_agg(id) FROM gone)";

/// Releases what the workers `$1` (whose lease [`START`] deleted) held: their items and
/// instances become unheld. A statement of its own, run only when a lease lapsed, so that
/// it looks the holders up by key: joined to [`START`]'s deletion, the planner could not
/// know that none lapsed, and read `work_by_holder` and `instances_held` from their
/// first entry at every claim (12 ms on `instances` after a `chain` bench).
const RELEASE_GONE: &str = "WITH work_freed AS ( \
        UPDATE durable.work SET held_by = NULL WHERE held_by = ANY($1::bigint[])) \
    UPDATE durable.instances SET held_by = NULL WHERE held_by = ANY($1::bigint[])";

/// A page of the unheld work items after id `$1`: those with no holder, since [`START`]
/// released what the workers whose lease lapsed held. It reads the partial index
/// `work_unheld`, so a claim costs what is unheld, not the whole queue. Tasks parked for
/// the limits of the activities `$3` (`claim/limits.rs`) are left out: the claim reads
/// the first few of each.
const ITEMS: &str = "SELECT w.id, w.record FROM durable.work w \
    WHERE w.held_by IS NULL AND w.id > $1 \
        AND (w.activity IS NULL OR w.activity <> ALL($3::text[])) \
    ORDER BY w.id LIMIT $2";

/// The records of instances `$1`, with their live holders.
const INSTANCES: &str = "SELECT i.id, i.record, (SELECT k.id FROM durable.workers k \
        WHERE k.id = i.held_by AND k.expires_at > now()) \
    FROM durable.instances i WHERE i.id = ANY($1::bytea[])";

/// A page of the stalled instances no worker holds, in creation order, after
/// (`created_ms`, `id`) (`$1`, `$2`), at most `$3`: those with no holder, since [`START`]
/// released what the workers whose lease lapsed held. A worker that stalls an instance
/// holds it for as long as it lives, so this reads the partial index
/// `instances_stalled_unheld` (`schema.rs`): a claim costs the stalled instances it may
/// take (and those of code no live worker has), not every instance that ever stalled. The
/// status is a literal, not a parameter, so that the generic plan matches the index's
/// predicate.
const STALLED: &str = "SELECT i.id, i.record, i.created_ms FROM durable.instances i \
    WHERE i.status = 'stalled' AND i.held_by IS NULL AND (i.created_ms, i.id) > ($1, $2) \
    ORDER BY i.created_ms, i.id LIMIT $3";

/// Takes for `$1` the instances of `$2` that are still live (`$3`: the terminal statuses)
/// and unheld, skipping those another transaction has locked; returns their records.
const TAKE_INSTANCES: &str = "WITH c AS ( \
        SELECT id FROM durable.instances i \
        WHERE id = ANY($2::bytea[]) AND status <> ALL($3::text[]) AND (held_by IS NULL \
            OR NOT EXISTS (SELECT FROM durable.workers k \
                WHERE k.id = i.held_by AND k.expires_at > now())) \
        ORDER BY id FOR UPDATE SKIP LOCKED) \
    UPDATE durable.instances i SET held_by = $1 FROM c WHERE i.id = c.id \
    RETURNING i.id, i.record";

/// Takes for `$1` the work items of `$2` that are still unheld, skipping those another
/// transaction has locked.
const TAKE_ITEMS: &str = "WITH c AS ( \
        SELECT id FROM durable.work w \
        WHERE id = ANY($2::bigint[]) AND (held_by IS NULL \
            OR NOT EXISTS (SELECT FROM durable.workers k \
                WHERE k.id = w.held_by AND k.expires_at > now())) \
        ORDER BY id FOR UPDATE SKIP LOCKED) \
    UPDATE durable.work w SET held_by = $1 FROM c WHERE w.id = c.id RETURNING w.id";

/// The most unheld items read per statement.
const PAGE: usize = 1_000;

/// A live instance as read: its record and the worker holding it under a live lease.
type Read = (InstanceRecord, Option<WorkerId>);

/// An item chosen, with the instance this claim takes that it depends on (its messages
/// and timers are taken only if the instance is).
type Chosen = (WorkId, WorkItem, Option<String>);

/// What a claim whose `COMMIT` got no answer may have taken: released before the claim
/// runs again (on a new connection), so the worker, which never learnt of them, does not
/// hold them for as long as it lives.
#[derive(Default)]
pub(super) struct Unknown {
    instances: Vec<Vec<u8>>,
    items: Vec<i64>,
}

/// Releases what `unknown` names, if the claim that took it did commit.
const RELEASE: &str = "WITH i AS (UPDATE durable.instances SET held_by = NULL         WHERE id = ANY($2::bytea[]) AND held_by = $1)     UPDATE durable.work SET held_by = NULL WHERE id = ANY($3::bigint[]) AND held_by = $1";

/// Claims for `worker`. `unknown` carries, from one attempt to the next, what an attempt
/// whose `COMMIT` went unanswered may have taken; it is released first.
pub(super) fn claim(
    conn: &mut Conn,
    target: &Target,
    worker: WorkerId,
    filter: &ClaimFilter,
    unknown: &mut Option<Unknown>,
) -> Result<Claim, Failure> {
    let error = |doing: &'static str| move |e| Failure::from(target.error(doing, e));
    if let Some(taken) = unknown.as_ref() {
        conn.query(
            RELEASE,
            &[&worker_key(worker), &taken.instances, &taken.items],
        )
        .map_err(error(
            "releasing what a claim whose outcome is unknown took",
        ))?;
        *unknown = None;
    }
    let max_instances = filter.max_instances.max(1);
    let max_items = filter.max_items.max(1);
    let mut tx = conn.transaction().map_err(error("starting a claim"))?;
    let rows = tx
        .query(START, &[&worker_key(worker)])
        .map_err(error("checking a worker's lease"))?;
    let (live, gone): (bool, Option<Vec<i64>>) = rows
        .first()
        .map_or((false, None), |row| (row.get(0), row.get(1)));
    if let Some(gone) = gone {
        tx.query(RELEASE_GONE, &[&gone])
            .map_err(error("releasing what workers whose lease lapsed held"))?;
    }
    if !live {
        return Err(StoreError::LeaseExpired { worker }.into());
    }
    // The live instances met, with how the worker stands with each.
    let mut met: BTreeMap<String, (Holding, InstanceRecord)> = BTreeMap::new();
    // Every instance read: `None` if it finished or is absent.
    let mut known: HashMap<String, Option<Read>> = HashMap::new();
    let mut newly = 0;
    let mut items: Vec<Chosen> = Vec::new();
    // Tasks of limited activities, taken after the others as their limits allow.
    let mut waiting: Vec<(WorkId, WorkItem)> = Vec::new();
    // Pending instances of limited orchestrators, and their messages and timers, likewise.
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut pending_items: Vec<(WorkId, WorkItem, String)> = Vec::new();
    let page = max_items.clamp(1, PAGE);
    let mut after = i64::MIN;
    let limited: Vec<&str> = filter.activity_limits.keys().map(String::as_str).collect();
    'pages: while items.len() < max_items {
        let rows = tx
            .query(ITEMS, &[&after, &(page as i64), &limited])
            .map_err(error("reading the work queue"))?;
        let read = rows.iter().map(item_row).collect::<Result<Vec<_>, _>>()?;
        let unknown: HashSet<&str> = read
            .iter()
            .map(|(_, item)| instance_of(item))
            .filter(|id| !known.contains_key(*id))
            .collect();
        if !unknown.is_empty() {
            for id in &unknown {
                known.insert((*id).to_owned(), None);
            }
            let unknown: Vec<&[u8]> = unknown.iter().map(|id| id.as_bytes()).collect();
            let rows = tx
                .query(INSTANCES, &[&unknown])
                .map_err(error("reading instances"))?;
            for row in &rows {
                let (id, record, holder) = instance_with_holder(row)?;
                let live = (!record.status.is_terminal()).then_some((record, holder));
                known.insert(id, live);
            }
        }
        for (id, item) in &read {
            if items.len() >= max_items {
                break 'pages;
            }
            let instance = instance_of(item);
            let Some((record, holder)) = known.get(instance).cloned().flatten() else {
                // An item of a finished or gone instance: taken, to be removed.
                items.push((*id, item.clone(), None));
                continue;
            };
            let (holding, _) = met.entry(instance.to_owned()).or_insert_with(|| {
                let holding = match holder {
                    Some(holder) if holder == worker => Holding::Held,
                    _ => Holding::Other,
                };
                (holding, record.clone())
            });
            // An instance no live worker holds is claimed with its first item met (of any
            // kind): its turns run here from now on.
            if *holding == Holding::Other
                && holder.is_none()
                && newly < max_instances
                && filter.takes_instance(&record)
            {
                if filter.limits_start(&record) {
                    pending.insert(instance.to_owned());
                } else {
                    *holding = Holding::Claimed;
                    newly += 1;
                }
            }
            if *holding == Holding::Other
                && !matches!(item, WorkItem::Activity(_))
                && pending.contains(instance)
            {
                pending_items.push((*id, item.clone(), instance.to_owned()));
                continue;
            }
            let (take, depends) = match item {
                WorkItem::Activity(task) if filter.limits_of(&task.activity).is_some() => {
                    if filter.takes_activity(&task.activity) {
                        waiting.push((*id, item.clone()));
                    }
                    (false, None)
                }
                WorkItem::Activity(task) => (filter.takes_activity(&task.activity), None),
                WorkItem::Message { .. } | WorkItem::Timer { .. } => {
                    let depends = (*holding == Holding::Claimed).then(|| instance.to_owned());
                    (*holding != Holding::Other, depends)
                }
            };
            if take {
                items.push((*id, item.clone(), depends));
            }
        }
        match read.last() {
            Some((last, _)) if read.len() == page => after = work_key(*last),
            _ => break,
        }
    }
    let room = max_instances.saturating_sub(newly);
    let chosen = limits::take_pending(&mut tx, filter, &pending, &met, room)
        .map_err(error("claiming instances of limited orchestrators"))?;
    for id in &chosen {
        if let Some((holding, _)) = met.get_mut(id) {
            *holding = Holding::Claimed;
        }
    }
    newly += chosen.len();
    items.extend(
        (pending_items.into_iter())
            .filter(|(_, _, instance)| chosen.contains(instance))
            .map(|(id, item, instance)| (id, item, Some(instance))),
    );
    // Stalled instances no live worker holds, to try again with this worker's code.
    let mut after: (i64, Vec<u8>) = (i64::MIN, Vec::new());
    'stalled: while newly < max_instances {
        let rows = tx
            .query(STALLED, &[&after.0, &after.1, &(PAGE as i64)])
            .map_err(error("reading the stalled instances"))?;
        for row in &rows {
            if newly >= max_instances {
                break 'stalled;
            }
            let (id, record) = instance_row(row)?;
            let mine = met
                .get(&id)
                .is_some_and(|(holding, _)| *holding != Holding::Other);
            if !mine && !record.status.is_terminal() && filter.takes_instance(&record) {
                met.insert(id, (Holding::Claimed, record));
                newly += 1;
            }
        }
        match rows.last() {
            Some(last) if rows.len() == PAGE => after = (last.get(2), last.get(0)),
            _ => break,
        }
    }
    take(&mut tx, worker, &mut met, &mut items).map_err(error("claiming work"))?;
    let room = max_items.saturating_sub(items.len());
    let (limited, retry_after) = limits::take(&mut tx, worker, filter, waiting, room)
        .map_err(error("claiming tasks of limited activities"))?;
    // The instances of parked tasks taken were not read with the queue.
    let unread: BTreeSet<&str> = (limited.iter())
        .map(|(_, item)| instance_of(item))
        .filter(|id| !known.contains_key(*id))
        .collect();
    if !unread.is_empty() {
        let ids: Vec<&[u8]> = unread.iter().map(|id| id.as_bytes()).collect();
        let rows = tx
            .query(INSTANCES, &[&ids])
            .map_err(error("reading instances"))?;
        for row in &rows {
            let (id, record, holder) = instance_with_holder(row)?;
            let live = (!record.status.is_terminal()).then_some((record, holder));
            known.insert(id, live);
        }
    }
    for (_, item) in &limited {
        let instance = instance_of(item);
        if let Some(Some((record, holder))) = known.get(instance) {
            met.entry(instance.to_owned()).or_insert_with(|| {
                let holding = match holder {
                    Some(holder) if *holder == worker => Holding::Held,
                    _ => Holding::Other,
                };
                (holding, record.clone())
            });
        }
    }
    items.extend(limited.into_iter().map(|(id, item)| (id, item, None)));
    items.sort_by_key(|(id, _, _)| *id);
    if let Err(e) = tx.commit() {
        *unknown = Some(Unknown {
            instances: met
                .iter()
                .filter(|(_, (holding, _))| *holding == Holding::Claimed)
                .map(|(id, _)| id.as_bytes().to_vec())
                .collect(),
            items: items.iter().map(|(id, _, _)| work_key(*id)).collect(),
        });
        return Err(error("committing a claim")(e));
    }
    // The instances the claim took, or took an item of; not those it only met.
    let with_items: HashSet<&str> = items.iter().map(|(_, item, _)| instance_of(item)).collect();
    let mut instances: Vec<ClaimedInstance> = met
        .into_iter()
        .filter(|(id, (holding, _))| {
            *holding == Holding::Claimed || with_items.contains(id.as_str())
        })
        .map(|(id, (holding, record))| ClaimedInstance {
            id,
            record,
            holding,
        })
        .collect();
    instances.sort_by(|a, b| (a.record.created_ms, &a.id).cmp(&(b.record.created_ms, &b.id)));
    let items = items.into_iter().map(|(id, item, _)| (id, item)).collect();
    Ok(Claim {
        instances,
        items,
        retry_after,
    })
}

/// Takes the instances `met` newly claims and then `items`; drops what a concurrent claim
/// took first (and the messages and timers of an instance it took).
fn take(
    tx: &mut super::connect::Prepared<'_>,
    worker: WorkerId,
    met: &mut BTreeMap<String, (Holding, InstanceRecord)>,
    items: &mut Vec<Chosen>,
) -> Result<(), postgres::Error> {
    let claimed: Vec<&[u8]> = met
        .iter()
        .filter(|(_, (holding, _))| *holding == Holding::Claimed)
        .map(|(id, _)| id.as_bytes())
        .collect();
    if !claimed.is_empty() {
        let terminal: Vec<&str> = StatusKind::ALL
            .iter()
            .filter(|kind| kind.is_terminal())
            .map(|kind| kind.as_str())
            .collect();
        let rows = tx.query(TAKE_INSTANCES, &[&worker_key(worker), &claimed, &terminal])?;
        let mut taken: HashMap<String, InstanceRecord> = HashMap::new();
        for row in &rows {
            // A record that no longer decodes keeps the one read before.
            if let Ok((id, record)) = instance_row(row) {
                taken.insert(id, record);
            } else {
                let id: Vec<u8> = row.get(0);
                let id = String::from_utf8_lossy(&id).into_owned();
                let record = met[&id].1.clone();
                taken.insert(id, record);
            }
        }
        for (id, (holding, record)) in met.iter_mut() {
            if *holding != Holding::Claimed {
                continue;
            }
            match taken.remove(id) {
                Some(now) => *record = now,
                None => *holding = Holding::Other,
            }
        }
        items.retain(|(_, _, depends)| {
            depends
                .as_ref()
                .is_none_or(|id| met[id].0 == Holding::Claimed)
        });
    }
    if !items.is_empty() {
        let ids: Vec<i64> = items.iter().map(|(id, _, _)| work_key(*id)).collect();
        let rows = tx.query(TAKE_ITEMS, &[&worker_key(worker), &ids])?;
        let taken: HashSet<i64> = rows.iter().map(|row| row.get(0)).collect();
        items.retain(|(id, _, _)| taken.contains(&work_key(*id)));
    }
    Ok(())
}

/// The instance a work item is for.
fn instance_of(item: &WorkItem) -> &str {
    match item {
        WorkItem::Message { instance, .. } | WorkItem::Timer { instance, .. } => instance,
        WorkItem::Activity(task) => &task.instance,
    }
}

/// A row of [`ITEMS`].
fn item_row(row: &Row) -> Result<(WorkId, WorkItem), StoreError> {
    // The bigint holds the WorkId's bits (`commit::work_key`).
    let id = row.get::<_, i64>(0) as WorkId;
    let item = decode(row.get(1), || format!("work item {id} (table `work`)"))?;
    Ok((id, item))
}

/// A row of [`INSTANCES`].
fn instance_with_holder(
    row: &Row,
) -> Result<(String, InstanceRecord, Option<WorkerId>), StoreError> {
    let (id, record) = instance_row(row)?;
    let holder: Option<i64> = row.get(2);
    Ok((id, record, holder.map(|w| w as WorkerId)))
}

mod limits;
#[cfg(test)]
mod tests;
