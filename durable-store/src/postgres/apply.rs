//! The one statement that writes a call's net change: every table's rows as arrays,
//! `unnest`ed by data-modifying CTEs, all gated by the history and lease fences.
//!
//! One statement, so one round trip, whether the call holds one commit or hundreds. The
//! CTEs see the tables as they were before the statement and write disjoint rows (the plan
//! holds one change per key). The removal of a history is the exception: its rows may be
//! written again by the same call, so it runs as a statement of its own, before this one.

use std::borrow::Cow;

use postgres::types::ToSql;

use super::columns;
use super::commit::{Plan, WriteError, encode, work_key, worker_key};
use crate::record::{InstanceRecord, StatusKind};

/// The body of the CTE that fences a call's history appends, over the arrays of
/// parameters `$ids` (instance ids) and `$firsts` (where each append starts): the first
/// append that does not start where its stored history ends, with the stored length.
/// [`APPLY`] and [`REMOVE_HISTORIES`] check the same fence.
macro_rules! history_fence {
    ($ids:literal, $firsts:literal) => {
        concat!(
            "
    SELECT f.id, f.first, COALESCE(h.stored, 0) AS stored
    FROM unnest(",
            $ids,
            "::bytea[], ",
            $firsts,
            "::bigint[]) AS f(id, first)
    CROSS JOIN LATERAL (
        SELECT max(idx) + 1 AS stored FROM durable.history WHERE instance_id = f.id
    ) AS h
    WHERE COALESCE(h.stored, 0) <> f.first
    LIMIT 1
"
        )
    };
}

/// The statement. `refused` holds what the call may not write: appends that do not start
/// where their stored history ends, and commits under a lease that lapsed, or that write
/// an instance or remove a work item another live worker holds (`Leases::check` of
/// `lease/local.rs`, the reference). Every write is gated on it being empty; the statement returns
/// its first row (the lease refusals in commit order, then the history's), so a refused
/// call writes nothing and says why.
///
/// The leases of the committing workers are locked (`FOR KEY SHARE`), as are the instances
/// and work items whose holders are checked (`FOR UPDATE`): a claim that takes over a
/// lapsed worker's holdings deletes its lease row first, so it waits for this statement's
/// transaction, or this statement finds the row gone; a claim taking an instance this
/// call writes makes it wait and then see the claim's holder.
pub(super) const APPLY: &str = concat!(
    "\nWITH history_fence AS (",
    history_fence!("$1", "$2"),
    "),
leases AS (
    SELECT id FROM durable.workers
    WHERE id = ANY($30::bigint[]) AND expires_at > now()
    FOR KEY SHARE
),
held AS (
    SELECT id, status, held_by FROM durable.instances
    WHERE id = ANY($33::bytea[])
    ORDER BY id
    FOR UPDATE
),
queued AS (
    SELECT id, held_by FROM durable.work
    WHERE id = ANY($38::bigint[])
    ORDER BY id
    FOR UPDATE
),
refused AS (
    -- After the lease refusals: a worker that lost its lease learns that first.
    SELECT 'history' AS kind, 2147483647 AS idx, 0 AS rank, id, first AS a, stored AS b,
           NULL::bigint AS c
    FROM history_fence
    UNION ALL
    SELECT 'expired', l.idx, 0, NULL, l.worker, NULL, NULL
    FROM unnest($29::int[], $30::bigint[]) AS l(idx, worker)
    WHERE l.worker NOT IN (SELECT id FROM leases)
    UNION ALL
    SELECT 'instance', f.idx, f.rank, f.id, f.worker, f.holder, NULL
    FROM (
        SELECT f.idx, f.rank, f.id, f.worker, h.status,
               COALESCE(f.prior, (
                   SELECT k.id FROM durable.workers k
                   WHERE k.id = h.held_by AND k.expires_at > now()
               )) AS holder
        FROM unnest($31::int[], $32::int[], $33::bytea[], $34::bigint[], $35::bigint[])
            AS f(idx, rank, id, worker, prior)
        LEFT JOIN held h ON h.id = f.id
    ) AS f
    WHERE f.holder <> f.worker AND f.status <> ALL($45::text[])
    UNION ALL
    SELECT 'work', d.idx, d.rank, NULL, d.worker, q.held_by, d.id
    FROM unnest($36::int[], $37::int[], $38::bigint[], $39::bigint[])
        AS d(idx, rank, id, worker)
    JOIN queued q ON q.id = d.id
    WHERE q.held_by <> d.worker AND EXISTS (
        SELECT FROM durable.workers k WHERE k.id = q.held_by AND k.expires_at > now()
    )
),
instances_removed AS (
    DELETE FROM durable.instances
    WHERE id = ANY($3::bytea[]) AND NOT EXISTS (SELECT FROM refused)
),
instances_written AS (
    INSERT INTO durable.instances
        (id, orchestrator, status, history_len, created_ms, updated_ms, input, output,
         custom_status, record, held_by)
    SELECT id, orchestrator, status, history_len, created_ms, updated_ms, input::json,
           output::json, custom_status::json, record, held_by
    FROM unnest($4::bytea[], $5::text[], $6::text[], $7::bigint[], $8::bigint[],
                $9::bigint[], $10::text[], $11::text[], $12::text[], $13::bytea[],
                $40::bigint[])
        AS t(id, orchestrator, status, history_len, created_ms, updated_ms, input, output,
             custom_status, record, held_by)
    WHERE NOT EXISTS (SELECT FROM refused)
    ON CONFLICT (id) DO UPDATE SET
        orchestrator = EXCLUDED.orchestrator, status = EXCLUDED.status,
        history_len = EXCLUDED.history_len, created_ms = EXCLUDED.created_ms,
        updated_ms = EXCLUDED.updated_ms, input = EXCLUDED.input, output = EXCLUDED.output,
        custom_status = EXCLUDED.custom_status, record = EXCLUDED.record,
        -- A released instance (`$47`) is left unheld, whoever held the row before, as is
        -- a finished one (`$45`): a worker holds an instance until it finishes, and what
        -- leaving or expiring releases costs the live instances, not all it ever ran.
        held_by = CASE WHEN durable.instances.id = ANY($47::bytea[])
                            OR EXCLUDED.status = ANY($45::text[]) THEN NULL
                       ELSE COALESCE(EXCLUDED.held_by, durable.instances.held_by) END
    -- An instance expected absent that is there (another start won) is left as it is.
    WHERE durable.instances.id <> ALL($46::bytea[])
    -- An instance of a limited orchestrator that finishes frees a slot.
    RETURNING id, limited AND status = ANY($45::text[]) AS freed
),
instances_held AS (
    UPDATE durable.instances i SET held_by = t.worker
    FROM unnest($41::bytea[], $42::bigint[]) AS t(id, worker)
    WHERE i.id = t.id AND NOT EXISTS (SELECT FROM refused)
),
events AS (
    INSERT INTO durable.history (instance_id, idx, kind, payload, record)
    SELECT instance_id, idx, kind, payload::json, record
    FROM unnest($14::bytea[], $15::bigint[], $16::text[], $17::text[], $18::bytea[])
        AS t(instance_id, idx, kind, payload, record)
    WHERE NOT EXISTS (SELECT FROM refused)
),
work_removed AS (
    DELETE FROM durable.work
    WHERE id = ANY($19::bigint[]) AND NOT EXISTS (SELECT FROM refused)
    -- A task of a limited activity (marked by the claim that took it): its slot frees.
    RETURNING activity
),
work_written AS (
    INSERT INTO durable.work (id, kind, instance_id, payload, record, held_by)
    SELECT id, kind, instance_id, payload::json, record, held_by
    FROM unnest($20::bigint[], $21::text[], $22::bytea[], $23::text[], $24::bytea[],
                $43::bigint[])
        AS t(id, kind, instance_id, payload, record, held_by)
    WHERE NOT EXISTS (SELECT FROM refused)
    ON CONFLICT (id) DO UPDATE SET
        kind = EXCLUDED.kind, instance_id = EXCLUDED.instance_id,
        payload = EXCLUDED.payload, record = EXCLUDED.record, held_by = EXCLUDED.held_by
),
progress_removed AS (
    DELETE FROM durable.progress
    WHERE key = ANY($25::bytea[]) AND NOT EXISTS (SELECT FROM refused)
),
progress_written AS (
    INSERT INTO durable.progress (key, json, value)
    SELECT key, json::json, value
    FROM unnest($26::bytea[], $27::text[], $28::bytea[]) AS t(key, json, value)
    WHERE NOT EXISTS (SELECT FROM refused)
    ON CONFLICT (key) DO UPDATE SET json = EXCLUDED.json, value = EXCLUDED.value
)
SELECT kind, id, a, b, c FROM (SELECT * FROM refused ORDER BY idx, rank LIMIT 1) AS first
UNION ALL
SELECT 'exists', e.id, NULL, NULL, NULL
FROM unnest($46::bytea[]) AS e(id)
WHERE NOT EXISTS (SELECT FROM refused)
    AND e.id NOT IN (SELECT id FROM instances_written)
UNION ALL
SELECT 'notified', NULL, NULL, NULL, NULL
FROM (SELECT pg_notify('durable_work', '') WHERE $44::bool
    OR EXISTS (SELECT FROM work_removed WHERE activity IS NOT NULL)
    OR EXISTS (SELECT FROM instances_written WHERE freed)) AS n"
);

/// Removes whole histories (`$1`); runs before [`APPLY`] in the same transaction. Appends
/// of the call before a removal (`$2`, `$3`: id, first index) are checked first, against
/// the history as stored: the first that does not start where it ends is returned, and
/// then nothing is removed.
pub(super) const REMOVE_HISTORIES: &str = concat!(
    "\nWITH fence AS (",
    history_fence!("$2", "$3"),
    "),
removed AS (
    DELETE FROM durable.history
    WHERE instance_id = ANY($1::bytea[]) AND NOT EXISTS (SELECT FROM fence)
)
SELECT 'history', id, first, stored, NULL::bigint FROM fence"
);

/// The parameters of [`APPLY`]: one array per column, in its order.
#[derive(Default)]
pub(super) struct Rows<'a> {
    fence_ids: Vec<&'a [u8]>,
    fence_firsts: Vec<i64>,
    instances_removed: Vec<&'a [u8]>,
    instance_ids: Vec<&'a [u8]>,
    orchestrators: Vec<Cow<'a, str>>,
    statuses: Vec<&'static str>,
    history_lens: Vec<i64>,
    created: Vec<i64>,
    updated: Vec<i64>,
    inputs: Vec<Option<&'a str>>,
    outputs: Vec<Option<&'a str>>,
    custom_statuses: Vec<Option<&'a str>>,
    instance_records: Vec<Vec<u8>>,
    event_ids: Vec<&'a [u8]>,
    event_indices: Vec<i64>,
    event_kinds: Vec<&'static str>,
    event_payloads: Vec<Option<&'a str>>,
    event_records: Vec<Vec<u8>>,
    work_removed: Vec<i64>,
    work_ids: Vec<i64>,
    work_kinds: Vec<&'static str>,
    work_instances: Vec<&'a [u8]>,
    work_payloads: Vec<Option<&'a str>>,
    work_records: Vec<Vec<u8>>,
    progress_removed: Vec<&'a [u8]>,
    progress_keys: Vec<&'a [u8]>,
    progress_jsons: Vec<Option<&'a str>>,
    progress_values: Vec<&'a [u8]>,
    lease_indices: Vec<i32>,
    lease_workers: Vec<i64>,
    fenced_indices: Vec<i32>,
    fenced_ranks: Vec<i32>,
    fenced_ids: Vec<&'a [u8]>,
    fenced_workers: Vec<i64>,
    fenced_priors: Vec<Option<i64>>,
    dequeued_indices: Vec<i32>,
    dequeued_ranks: Vec<i32>,
    dequeued_ids: Vec<i64>,
    dequeued_workers: Vec<i64>,
    instance_holders: Vec<Option<i64>>,
    held_ids: Vec<&'a [u8]>,
    held_workers: Vec<i64>,
    work_holders: Vec<Option<i64>>,
    left: bool,
    terminal: Vec<&'static str>,
    /// The instances the call creates expecting them absent (`Commit::expected`).
    expected_absent: Vec<&'a [u8]>,
    /// The instances the call's commits release (`CommitLease::released`).
    released: Vec<&'a [u8]>,
}

impl<'a> Rows<'a> {
    /// The rows of `plan`, its records encoded.
    pub(super) fn of(plan: &Plan<'a>) -> Result<Self, WriteError> {
        let mut rows = Rows::default();
        for (id, first) in plan.fences.iter().filter(|(id, _)| !plan.removes(id)) {
            rows.fence_ids.push(id.as_bytes());
            rows.fence_firsts.push(i64::from(*first));
        }
        for (id, record) in &plan.instances {
            match record {
                Some(record) => {
                    rows.push_instance(id, record)?;
                    let holder = (plan.lease.holders.get(id))
                        .filter(|_| !record.status.is_terminal())
                        .map(|w| worker_key(*w));
                    rows.instance_holders.push(holder);
                }
                None => rows.instances_removed.push(id.as_bytes()),
            }
        }
        for (id, worker) in &plan.lease.holders {
            if !plan.instances.contains_key(id) {
                rows.held_ids.push(id.as_bytes());
                rows.held_workers.push(worker_key(*worker));
            }
        }
        for (index, worker) in &plan.lease.workers {
            rows.lease_indices.push(*index);
            rows.lease_workers.push(worker_key(*worker));
        }
        for (index, rank, id, worker, prior) in &plan.lease.instances {
            rows.fenced_indices.push(*index);
            rows.fenced_ranks.push(*rank);
            rows.fenced_ids.push(id.as_bytes());
            rows.fenced_workers.push(worker_key(*worker));
            rows.fenced_priors.push(prior.map(worker_key));
        }
        for (index, rank, id, worker) in &plan.lease.dequeued {
            rows.dequeued_indices.push(*index);
            rows.dequeued_ranks.push(*rank);
            rows.dequeued_ids.push(work_key(*id));
            rows.dequeued_workers.push(worker_key(*worker));
        }
        rows.left = plan.lease.left;
        rows.released = plan.lease.released.iter().map(|id| id.as_bytes()).collect();
        rows.expected_absent = plan
            .expected
            .iter()
            .filter(|(_, expected)| expected.is_none())
            .map(|(id, _)| id.as_bytes())
            .collect();
        rows.terminal = StatusKind::ALL
            .iter()
            .filter(|kind| kind.is_terminal())
            .map(|kind| kind.as_str())
            .collect();
        for (id, change) in &plan.histories {
            for (index, event) in &change.events {
                rows.event_ids.push(id.as_bytes());
                rows.event_indices.push(i64::from(*index));
                rows.event_kinds.push(event.kind_name());
                rows.event_payloads.push(columns::event_payload(event));
                rows.event_records
                    .push(encode(*event, || format!("event {index} of `{id}`"))?);
            }
        }
        for (id, item) in &plan.work {
            let Some((item, holder)) = item else {
                rows.work_removed.push(work_key(*id));
                continue;
            };
            rows.work_holders.push(holder.map(worker_key));
            let (kind, instance, payload) = columns::work_columns(item);
            rows.work_ids.push(work_key(*id));
            rows.work_kinds.push(kind);
            rows.work_instances.push(instance.as_bytes());
            rows.work_payloads.push(payload);
            rows.work_records
                .push(encode(*item, || format!("work item {id}"))?);
        }
        for (key, value) in &plan.progress {
            match value {
                Some(value) => {
                    rows.progress_keys.push(key.as_bytes());
                    rows.progress_jsons.push(columns::json(value));
                    rows.progress_values.push(value);
                }
                None => rows.progress_removed.push(key.as_bytes()),
            }
        }
        Ok(rows)
    }

    fn push_instance(&mut self, id: &'a str, record: &'a InstanceRecord) -> Result<(), WriteError> {
        self.instance_ids.push(id.as_bytes());
        self.orchestrators.push(columns::text(&record.orchestrator));
        self.statuses.push(record.status.name());
        self.history_lens.push(i64::from(record.history_len));
        // Milliseconds since 1970 fit in an i64 for 292 million years.
        self.created.push(record.created_ms as i64);
        self.updated.push(record.updated_ms as i64);
        self.inputs.push(columns::json(&record.input));
        self.outputs.push(columns::instance_output(record));
        self.custom_statuses
            .push(record.custom_status.as_deref().and_then(columns::json));
        self.instance_records
            .push(encode(record, || format!("instance record `{id}`"))?);
        Ok(())
    }

    /// The parameters `$1` to `$45` of [`APPLY`].
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 47] {
        [
            &self.fence_ids,
            &self.fence_firsts,
            &self.instances_removed,
            &self.instance_ids,
            &self.orchestrators,
            &self.statuses,
            &self.history_lens,
            &self.created,
            &self.updated,
            &self.inputs,
            &self.outputs,
            &self.custom_statuses,
            &self.instance_records,
            &self.event_ids,
            &self.event_indices,
            &self.event_kinds,
            &self.event_payloads,
            &self.event_records,
            &self.work_removed,
            &self.work_ids,
            &self.work_kinds,
            &self.work_instances,
            &self.work_payloads,
            &self.work_records,
            &self.progress_removed,
            &self.progress_keys,
            &self.progress_jsons,
            &self.progress_values,
            &self.lease_indices,
            &self.lease_workers,
            &self.fenced_indices,
            &self.fenced_ranks,
            &self.fenced_ids,
            &self.fenced_workers,
            &self.fenced_priors,
            &self.dequeued_indices,
            &self.dequeued_ranks,
            &self.dequeued_ids,
            &self.dequeued_workers,
            &self.instance_holders,
            &self.held_ids,
            &self.held_workers,
            &self.work_holders,
            &self.left,
            &self.terminal,
            &self.expected_absent,
            &self.released,
        ]
    }
}
