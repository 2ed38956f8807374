//! The claim of tasks of limited activities ([`ActivityLimits`]) on PostgreSQL: the
//! semantics of `Slots::choose` (`lease/local/slots.rs`, the reference), safe against
//! workers claiming at the same moment.
//!
//! For each limited activity with tasks waiting, in name order (so two claims never wait
//! for each other's locks in a cycle), the claim takes a transaction-scoped advisory lock
//! on the activity's name before it counts: the tasks of the activity live workers hold
//! (rows a claim marked with the activity) and its starts within the period. A claim of
//! the same activity at the same moment waits for the lock until this transaction ends,
//! then counts again (each statement of a `READ COMMITTED` transaction reads what was
//! committed before it began), so the two never take the same slot (no write skew).

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::commit::{work_key, worker_key};
use super::super::connect::Prepared;
use crate::lease::{ActivityLimits, ClaimFilter, WorkerId};
use crate::record::{WorkId, WorkItem};

/// Waits for, then holds until the transaction ends, the lock of activity `$1`'s limits.
const LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('durable.activity_limits'), hashtext($1))";

/// How many tasks of activity `$1` live workers hold.
const HELD: &str = "SELECT count(*) FROM durable.work w WHERE w.activity = $1 \
    AND EXISTS (SELECT FROM durable.workers k \
        WHERE k.id = w.held_by AND k.expires_at > now())";

/// Deletes the starts of activity `$1` older than its period (`$2` ms), then says how many
/// are left and in how many ms the oldest leaves the window.
const STARTS: &str = "WITH old AS ( \
        DELETE FROM durable.activity_starts WHERE activity = $1 \
            AND started_at <= clock_timestamp() - $2::bigint * interval '1 millisecond') \
    SELECT count(*), CEIL(EXTRACT(EPOCH FROM (min(started_at) \
            + $2::bigint * interval '1 millisecond' - clock_timestamp())) * 1000)::bigint \
    FROM durable.activity_starts WHERE activity = $1 \
        AND started_at > clock_timestamp() - $2::bigint * interval '1 millisecond'";

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

/// The tasks of one limited activity waiting, in id order, and how many the claim may
/// take.
struct Activity {
    limits: ActivityLimits,
    tasks: Vec<(WorkId, WorkItem)>,
    budget: usize,
}

/// Takes for `worker`, among `waiting` (unheld tasks of activities `filter` limits, in id
/// order), at most `room` tasks as the limits allow: activities of higher priority first.
/// Returns them, and when a rate window next opens for an activity left with tasks
/// waiting.
pub(super) fn take(
    tx: &mut Prepared<'_>,
    worker: WorkerId,
    filter: &ClaimFilter,
    waiting: Vec<(WorkId, WorkItem)>,
    room: usize,
) -> Result<(Vec<(WorkId, WorkItem)>, Option<Duration>), postgres::Error> {
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
    if room == 0 {
        return Ok((Vec::new(), None));
    }
    // Locked in name order: claims of several activities never wait in a cycle.
    for (name, activity) in &mut activities {
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
    let mut order: Vec<(&String, &mut Activity)> = activities.iter_mut().collect();
    order.sort_by_key(|(name, activity)| (std::cmp::Reverse(activity.limits.priority), *name));
    let mut room = room;
    let mut taken = Vec::new();
    for (name, activity) in order {
        let n = activity.budget.min(room);
        if n == 0 {
            continue;
        }
        let ids: Vec<i64> = (activity.tasks.iter().take(n))
            .map(|(id, _)| work_key(*id))
            .collect();
        let rows = tx.query(TAKE, &[&worker_key(worker), &ids, name])?;
        let got: std::collections::HashSet<i64> = rows.iter().map(|row| row.get(0)).collect();
        if activity.limits.rate.is_some() && !got.is_empty() {
            tx.query(STARTED, &[name, &(got.len() as i32)])?;
        }
        room -= got.len();
        taken.extend(
            std::mem::take(&mut activity.tasks)
                .into_iter()
                .filter(|(id, _)| got.contains(&work_key(*id))),
        );
    }
    Ok((taken, retry_after))
}
