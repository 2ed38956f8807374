//! The claim of tasks of limited activities ([`ActivityLimits`]) and of pending instances
//! of limited orchestrators ([`OrchestratorLimits`](crate::lease::OrchestratorLimits)) on
//! PostgreSQL: the semantics of `Slots::choose` and `Leases::take_pending`
//! (`lease/local/slots.rs`, the reference), safe against workers claiming at the same
//! moment.
//!
//! For each limited activity with tasks waiting, in name order (so two claims never wait
//! for each other's locks in a cycle), the claim takes a transaction-scoped advisory lock
//! on the activity's name before it counts: the tasks of the activity live workers hold
//! (rows a claim marked with the activity) and its starts within the period. Likewise
//! for each limited orchestrator with pending instances waiting: its instances that run,
//! or that are pending and held by a live worker (taken to start). A claim of
//! the same activity at the same moment waits for the lock until this transaction ends,
//! then counts again (each statement of a `READ COMMITTED` transaction reads what was
//! committed before it began), so the two never take the same slot (no write skew).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::super::commit::{work_key, worker_key};
use super::super::connect::Prepared;
use crate::lease::{ActivityLimits, ClaimFilter, Holding, WorkerId, counts_as_running};
use crate::record::{InstanceRecord, StatusKind, WorkId, WorkItem};

/// Waits for, then holds until the transaction ends, the lock of activity `$1`'s limits.
const LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('durable.activity_limits'), hashtext($1))";

/// How many tasks of activity `$1` live workers hold.
const HELD: &str = "SELECT count(*) FROM durable.work w \
    WHERE w.activity = $1 AND w.held_by IS NOT NULL \
        AND EXISTS (SELECT FROM durable.workers k \
            WHERE k.id = w.held_by AND k.expires_at > now())";

/// The first `$2` parked tasks of activity `$1` (left waiting by earlier claims, or
/// released by a worker whose lease lapsed), in id order.
const PARKED: &str = "SELECT w.id, w.record FROM durable.work w \
    WHERE w.activity = $1 AND w.held_by IS NULL ORDER BY w.id LIMIT $2";

/// Parks the tasks `$2` of activity `$1`, still unheld, that a claim left waiting: the
/// queue's reads leave them out from now on. Rows another transaction has locked (a
/// claim taking them) are skipped.
const PARK: &str = "WITH c AS ( \
        SELECT id FROM durable.work w \
        WHERE id = ANY($2::bigint[]) AND held_by IS NULL AND activity IS NULL \
        ORDER BY id FOR UPDATE SKIP LOCKED) \
    UPDATE durable.work w SET activity = $1 FROM c WHERE w.id = c.id";

/// Deletes the starts of activity `$1` older than its period (`$2` ms), then says how many
/// are left and in how many ms the oldest leaves the window.
const STARTS: &str = "WITH old AS ( \
        DELETE FROM durable.activity_starts WHERE activity = $1 \
            AND started_at <= clock_timestamp() - $2::bigint * interval '1 millisecond') \
    SELECT count(*), CEIL(EXTRACT(EPOCH FROM (min(started_at) \
            + $2::bigint * interval '1 millisecond' - clock_timestamp())) * 1000)::bigint \
    FROM durable.activity_starts WHERE activity = $1 \
        AND started_at > clock_timestamp() - $2::bigint * interval '1 millisecond'";

/// Waits for, then holds until the transaction ends, the lock of orchestrator `$1`'s
/// limits.
const LOCK_ORCHESTRATOR: &str =
    "SELECT pg_advisory_xact_lock(hashtext('durable.orchestrator_limits'), hashtext($1))";

/// How many instances of orchestrator `$1` run (status in `$2`), or are pending (`$3`)
/// and held by a live worker.
const RUNNING: &str = "SELECT count(*) FROM durable.instances i WHERE i.orchestrator = $1 \
    AND (i.status = ANY($2::text[]) OR (i.status = $3 AND EXISTS ( \
        SELECT FROM durable.workers k WHERE k.id = i.held_by AND k.expires_at > now())))";

/// Marks the instances `$1`, taken to start under their orchestrator's limit: the commit
/// that finishes one wakes the waiting workers.
const MARK_LIMITED: &str =
    "UPDATE durable.instances SET limited = true WHERE id = ANY($1::bytea[]) AND NOT limited";

/// Takes for `$1` the tasks `$2` of activity `$3` that are still unheld, skipping those
/// another transaction has locked, and marks them with the activity.
const TAKE: &str = "WITH c AS ( \
        SELECT id FROM durable.work w \
        WHERE id = ANY($2::bigint[]) AND (held_by IS NULL \
            OR NOT EXISTS (SELECT FROM durable.workers k \
                WHERE k.id = w.held_by AND k.expires_at > now())) \
        ORDER BY id FOR UPDATE SKIP LOCKED) \
    UPDATE durable.work w SET held_by = $1, activity = $3 FROM c WHERE w.id = c.id \
    RETURNING w.id";

/// Records `$2` starts of activity `$1`, now.
const STARTED: &str = "INSERT INTO durable.activity_starts (activity, started_at) \
    SELECT $1, clock_timestamp() FROM generate_series(1, $2::int)";

/// The tasks a claim took of limited activities, and when a rate window next opens for
/// those left waiting.
type Taken = (Vec<(WorkId, WorkItem)>, Option<Duration>);

/// The tasks of one limited activity waiting, in id order, and how many the claim may
/// take.
struct Activity {
    limits: ActivityLimits,
    tasks: Vec<(WorkId, WorkItem)>,
    budget: usize,
}

/// Takes for `worker`, among `waiting` (unheld tasks of activities `filter` limits read
/// from the queue, in id order) and the first parked tasks of each limited activity, at
/// most `room` tasks as the limits allow: tasks of higher priority first, then in id order
/// whatever their activity. Parks the tasks of `waiting` left waiting. Returns the tasks taken, and when a
/// rate window next opens for an activity left with tasks waiting.
pub(super) fn take(
    tx: &mut Prepared<'_>,
    worker: WorkerId,
    filter: &ClaimFilter,
    waiting: Vec<(WorkId, WorkItem)>,
    room: usize,
) -> Result<Taken, postgres::Error> {
    let mut activities: BTreeMap<String, Activity> = BTreeMap::new();
    for (id, item) in waiting {
        let WorkItem::Activity(task) = &item else {
            continue;
        };
        let Some(limits) = filter.limits_of(&task.activity) else {
            continue;
        };
        activities
            .entry(task.activity.clone())
            .or_insert_with(|| Activity {
                limits: *limits,
                tasks: Vec::new(),
                budget: 0,
            })
            .tasks
            .push((id, item));
    }
    let mut retry_after: Option<Duration> = None;
    // The tasks read from the queue, to park those left waiting.
    let fresh: BTreeMap<WorkId, String> = (activities.iter())
        .flat_map(|(name, a)| a.tasks.iter().map(move |(id, _)| (*id, name.clone())))
        .collect();
    for (name, limits) in &filter.activity_limits {
        if limits.is_limited() && !activities.contains_key(name) {
            activities.insert(
                name.clone(),
                Activity {
                    limits: *limits,
                    tasks: Vec::new(),
                    budget: 0,
                },
            );
        }
    }
    // Locked in name order: claims of several activities never wait in a cycle.
    for (name, activity) in &mut activities {
        let most = match (activity.limits.concurrency, activity.limits.rate) {
            (Some(n), Some(rate)) => n.min(rate.starts),
            (Some(n), None) => n,
            (None, Some(rate)) => rate.starts,
            (None, None) => 0,
        };
        let parked = tx.query(PARKED, &[name, &i64::from(most)])?;
        for row in &parked {
            let id = row.get::<_, i64>(0) as WorkId;
            // A task that does not decode is left for a claim without the limit to report.
            if let Ok(item) = crate::record::decode(row.get(1), || format!("work item {id}")) {
                activity.tasks.push((id, item));
            }
        }
        activity.tasks.sort_by_key(|(id, _)| *id);
        activity.tasks.dedup_by_key(|(id, _)| *id);
        if activity.tasks.is_empty() {
            continue;
        }
        tx.query(LOCK, &[name])?;
        let mut budget = activity.tasks.len();
        if let Some(n) = activity.limits.concurrency {
            let held: i64 = tx.query(HELD, &[name])?[0].get(0);
            budget = budget.min(usize::try_from(i64::from(n) - held).unwrap_or(0));
        }
        if let Some(rate) = activity.limits.rate {
            let period = i64::try_from(rate.period_ms()).unwrap_or(i64::MAX);
            let row = &tx.query(STARTS, &[name, &period])?[0];
            let (started, opens): (i64, Option<i64>) = (row.get(0), row.get(1));
            let left = usize::try_from(i64::from(rate.starts) - started).unwrap_or(0);
            if left < budget {
                let opens = Duration::from_millis(opens.unwrap_or(0).max(1) as u64);
                retry_after = Some(retry_after.map_or(opens, |r| r.min(opens)));
            }
            budget = budget.min(left);
        }
        activity.budget = budget;
    }
    // Higher priority first, then in id order whatever the activity (as `Slots::choose`):
    // taken by activity in name order, each within its budget, all within `room`.
    let mut order: Vec<(i32, WorkId, &String)> = (activities.iter())
        .flat_map(|(name, a)| (a.tasks.iter()).map(move |(id, _)| (a.limits.priority, *id, name)))
        .collect();
    order.sort_by_key(|(priority, id, _)| (std::cmp::Reverse(*priority), *id));
    let mut budgets: BTreeMap<&String, usize> = (activities.iter())
        .map(|(name, a)| (name, a.budget))
        .collect();
    let mut chosen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut room = room;
    for (_, id, name) in order {
        if room == 0 {
            break;
        }
        let budget = budgets.get_mut(name).expect("an activity of the order");
        if *budget > 0 {
            *budget -= 1;
            room -= 1;
            chosen.entry(name.clone()).or_default().push(work_key(id));
        }
    }
    let mut taken = Vec::new();
    let mut took = std::collections::HashSet::new();
    for (name, ids) in chosen {
        let rows = tx.query(TAKE, &[&worker_key(worker), &ids, &name])?;
        let got: std::collections::HashSet<i64> = rows.iter().map(|row| row.get(0)).collect();
        let Some(activity) = activities.get_mut(&name) else {
            continue;
        };
        if activity.limits.rate.is_some() && !got.is_empty() {
            tx.query(STARTED, &[&name, &(got.len() as i32)])?;
        }
        took.extend(got.iter().copied());
        taken.extend(
            std::mem::take(&mut activity.tasks)
                .into_iter()
                .filter(|(id, _)| got.contains(&work_key(*id))),
        );
    }
    let mut left: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (id, name) in &fresh {
        if !took.contains(&work_key(*id)) {
            left.entry(name.as_str()).or_default().push(work_key(*id));
        }
    }
    for (name, ids) in left {
        tx.query(PARK, &[&name, &ids])?;
    }
    Ok((taken, retry_after))
}

/// Chooses, among the pending instances `pending` of limited orchestrators (read in
/// `met`), at most `room` to claim, in creation order, while each orchestrator's running
/// instances stay under its `max_running`; the caller takes them. Holds each
/// orchestrator's lock until the transaction ends.
pub(super) fn take_pending(
    tx: &mut Prepared<'_>,
    filter: &ClaimFilter,
    pending: &BTreeSet<String>,
    met: &BTreeMap<String, (Holding, InstanceRecord)>,
    room: usize,
) -> Result<BTreeSet<String>, postgres::Error> {
    let mut chosen = BTreeSet::new();
    if pending.is_empty() || room == 0 {
        return Ok(chosen);
    }
    let mut order: Vec<(u64, &String, &str)> = (pending.iter())
        .filter_map(|id| {
            let record = &met.get(id)?.1;
            Some((record.created_ms, id, record.orchestrator.as_str()))
        })
        .collect();
    order.sort();
    let running: Vec<&str> = (StatusKind::ALL.iter())
        .filter(|kind| counts_as_running(**kind))
        .map(|kind| kind.as_str())
        .collect();
    // Locked in name order: claims of several orchestrators never wait in a cycle.
    let names: BTreeSet<&str> = order.iter().map(|(_, _, name)| *name).collect();
    let mut left: BTreeMap<&str, i64> = BTreeMap::new();
    for name in names {
        let Some(max) = filter.max_running_of(name) else {
            continue;
        };
        tx.query(LOCK_ORCHESTRATOR, &[&name])?;
        let count: i64 =
            tx.query(RUNNING, &[&name, &running, &StatusKind::Pending.as_str()])?[0].get(0);
        left.insert(name, i64::from(max) - count);
    }
    for (_, id, name) in order {
        if chosen.len() >= room {
            break;
        }
        if let Some(left) = left.get_mut(name)
            && *left > 0
        {
            *left -= 1;
            chosen.insert(id.clone());
        }
    }
    if !chosen.is_empty() {
        let ids: Vec<&[u8]> = chosen.iter().map(|id| id.as_bytes()).collect();
        tx.query(MARK_LIMITED, &[&ids])?;
    }
    Ok(chosen)
}
