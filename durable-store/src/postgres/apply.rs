//! The one statement that writes a call's net change: every table's rows as arrays,
//! `unnest`ed by data-modifying CTEs, all gated by the history fence.
//!
//! One statement, so one round trip, whether the call holds one commit or hundreds. The
//! CTEs see the tables as they were before the statement and write disjoint rows (the plan
//! holds one change per key). The removal of a history is the exception: its rows may be
//! written again by the same call, so it runs as a statement of its own, before this one.

use std::borrow::Cow;

use postgres::types::ToSql;

use super::columns;
use super::commit::{Plan, WriteError, encode, work_key};
use crate::record::InstanceRecord;

/// The statement. `fence` holds the first append (if any) that does not start where its
/// stored history ends; every write is gated on it being empty, and the statement returns
/// it, so a refused call writes nothing and says why.
pub(super) const APPLY: &str = "
WITH fence AS (
    SELECT f.id, f.first, h.stored
    FROM unnest($1::bytea[], $2::bigint[]) AS f(id, first)
    CROSS JOIN LATERAL (
        SELECT max(idx) + 1 AS stored FROM durable.history WHERE instance_id = f.id
    ) AS h
    WHERE h.stored IS NOT NULL AND h.stored <> f.first
    LIMIT 1
),
instances_removed AS (
    DELETE FROM durable.instances
    WHERE id = ANY($3::bytea[]) AND NOT EXISTS (SELECT FROM fence)
),
instances_written AS (
    INSERT INTO durable.instances
        (id, orchestrator, status, history_len, created_ms, updated_ms, input, output,
         custom_status, record)
    SELECT id, orchestrator, status, history_len, created_ms, updated_ms, input::json,
           output::json, custom_status::json, record
    FROM unnest($4::bytea[], $5::text[], $6::text[], $7::bigint[], $8::bigint[],
                $9::bigint[], $10::text[], $11::text[], $12::text[], $13::bytea[])
        AS t(id, orchestrator, status, history_len, created_ms, updated_ms, input, output,
             custom_status, record)
    WHERE NOT EXISTS (SELECT FROM fence)
    ON CONFLICT (id) DO UPDATE SET
        orchestrator = EXCLUDED.orchestrator, status = EXCLUDED.status,
        history_len = EXCLUDED.history_len, created_ms = EXCLUDED.created_ms,
        updated_ms = EXCLUDED.updated_ms, input = EXCLUDED.input, output = EXCLUDED.output,
        custom_status = EXCLUDED.custom_status, record = EXCLUDED.record
),
events AS (
    INSERT INTO durable.history (instance_id, idx, kind, payload, record)
    SELECT instance_id, idx, kind, payload::json, record
    FROM unnest($14::bytea[], $15::bigint[], $16::text[], $17::text[], $18::bytea[])
        AS t(instance_id, idx, kind, payload, record)
    WHERE NOT EXISTS (SELECT FROM fence)
),
work_removed AS (
    DELETE FROM durable.work
    WHERE id = ANY($19::bigint[]) AND NOT EXISTS (SELECT FROM fence)
),
work_written AS (
    INSERT INTO durable.work (id, kind, instance_id, payload, record)
    SELECT id, kind, instance_id, payload::json, record
    FROM unnest($20::bigint[], $21::text[], $22::bytea[], $23::text[], $24::bytea[])
        AS t(id, kind, instance_id, payload, record)
    WHERE NOT EXISTS (SELECT FROM fence)
    ON CONFLICT (id) DO UPDATE SET
        kind = EXCLUDED.kind, instance_id = EXCLUDED.instance_id,
        payload = EXCLUDED.payload, record = EXCLUDED.record
),
progress_removed AS (
    DELETE FROM durable.progress
    WHERE key = ANY($25::bytea[]) AND NOT EXISTS (SELECT FROM fence)
),
progress_written AS (
    INSERT INTO durable.progress (key, json, value)
    SELECT key, json::json, value
    FROM unnest($26::bytea[], $27::text[], $28::bytea[]) AS t(key, json, value)
    WHERE NOT EXISTS (SELECT FROM fence)
    ON CONFLICT (key) DO UPDATE SET json = EXCLUDED.json, value = EXCLUDED.value
)
SELECT id, first, stored FROM fence";

/// Removes whole histories; runs before [`APPLY`] in the same transaction.
pub(super) const REMOVE_HISTORIES: &str =
    "DELETE FROM durable.history WHERE instance_id = ANY($1::bytea[])";

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
}

impl<'a> Rows<'a> {
    /// The rows of `plan`, its records encoded.
    pub(super) fn of(plan: &Plan<'a>) -> Result<Self, WriteError> {
        let mut rows = Rows::default();
        for (id, first) in &plan.fences {
            rows.fence_ids.push(id.as_bytes());
            rows.fence_firsts.push(i64::from(*first));
        }
        for (id, record) in &plan.instances {
            match record {
                Some(record) => rows.push_instance(id, record)?,
                None => rows.instances_removed.push(id.as_bytes()),
            }
        }
        for (id, change) in &plan.histories {
            for (index, event) in &change.events {
                rows.event_ids.push(id.as_bytes());
                rows.event_indices.push(i64::from(*index));
                rows.event_kinds.push(columns::event_kind(event));
                rows.event_payloads.push(columns::event_payload(event));
                rows.event_records
                    .push(encode(*event, || format!("event {index} of `{id}`"))?);
            }
        }
        for (id, item) in &plan.work {
            let Some(item) = item else {
                rows.work_removed.push(work_key(*id));
                continue;
            };
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

    /// The parameters `$1` to `$28` of [`APPLY`].
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 28] {
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
        ]
    }
}
