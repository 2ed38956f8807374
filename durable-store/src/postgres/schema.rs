//! durable's schema in the database: created on first open, its version checked on every
//! open.

use super::connect::{Conn, Target};
use crate::error::StoreError;

/// The version of the schema this build creates, reads and writes, recorded in
/// `durable.meta` under `schema_version`. A database marked with a newer version is
/// refused with [`StoreError::OtherSchema`].
pub const SCHEMA_VERSION: u32 = 5;

/// The tables of version 1 (described in the module doc of `postgres`); [`TO_V2`],
/// [`TO_V3`], [`TO_V4`] and then [`TO_V5`] make them the current version.
const CREATE: &str = "
CREATE SCHEMA IF NOT EXISTS durable;
CREATE TABLE durable.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE durable.instances (
    id            bytea PRIMARY KEY,
    orchestrator  text NOT NULL,
    status        text NOT NULL,
    history_len   bigint NOT NULL,
    created_ms    bigint NOT NULL,
    updated_ms    bigint NOT NULL,
    input         json,
    output        json,
    custom_status json,
    record        bytea NOT NULL
);
CREATE TABLE durable.history (
    instance_id bytea NOT NULL,
    idx         bigint NOT NULL,
    kind        text NOT NULL,
    payload     json,
    record      bytea NOT NULL,
    PRIMARY KEY (instance_id, idx)
);
CREATE TABLE durable.work (
    id          bigint PRIMARY KEY,
    kind        text NOT NULL,
    instance_id bytea NOT NULL,
    payload     json,
    record      bytea NOT NULL
);
CREATE TABLE durable.progress (
    key   bytea PRIMARY KEY,
    json  json,
    value bytea NOT NULL
);
";

/// Version 1 to version 2: the leases (`workers`, the `held_by` columns and the work id
/// counter), and the listing indexes a database created before them lacks. Idempotent.
const TO_V2: &str = "
CREATE INDEX IF NOT EXISTS instances_by_status ON durable.instances (status, created_ms);
CREATE INDEX IF NOT EXISTS instances_by_orchestrator
    ON durable.instances (hashtext(orchestrator), created_ms);
CREATE INDEX IF NOT EXISTS instances_by_created ON durable.instances (created_ms);
CREATE TABLE IF NOT EXISTS durable.workers (
    id         bigint PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS durable.worker_ids;
ALTER TABLE durable.instances ADD COLUMN IF NOT EXISTS held_by bigint;
ALTER TABLE durable.work ADD COLUMN IF NOT EXISTS held_by bigint;
CREATE INDEX IF NOT EXISTS instances_by_holder ON durable.instances (held_by);
CREATE INDEX IF NOT EXISTS work_by_holder ON durable.work (held_by);
CREATE INDEX IF NOT EXISTS work_by_instance ON durable.work (instance_id);
-- The items no worker holds, in id order: what a claim reads.
CREATE INDEX IF NOT EXISTS work_unheld ON durable.work (id) WHERE held_by IS NULL;
CREATE TABLE IF NOT EXISTS durable.work_ids (
    next bigint NOT NULL
);
INSERT INTO durable.work_ids (next)
    SELECT COALESCE(max(id) + 1, 0) FROM durable.work
    WHERE NOT EXISTS (SELECT FROM durable.work_ids);
-- A turn rewrites its instance's row; with room left on the page the new version goes
-- beside the old one without touching the indexes (a heap-only tuple) when no indexed
-- column changed, as between the start and the finish of an instance.
ALTER TABLE durable.instances SET (fillfactor = 50);
UPDATE durable.meta SET value = '2' WHERE key = 'schema_version';
";

/// Version 2 to version 3: the stalled instances no worker holds, in creation order, which
/// a claim reads (see `claim.rs`). A worker that stalls an instance holds it for as long as
/// it lives, so without this index every claim read every stalled instance there ever was.
/// The literal `'stalled'` is `StatusKind::Stalled.as_str()`; the claim's statement names
/// it as a literal too, so that its generic plan matches the index's predicate. Idempotent.
///
/// The orchestrator version an instance runs is not a column: a claim decodes the record
/// of every instance it considers anyway (to return it), and reads the version there.
///
/// Version 3 also stores finished instances unheld (a worker holds an instance until it
/// finishes), so the index of holders covers the live instances only; and it drops the
/// index of work items by instance, which no statement reads (each work item written
/// paid for an entry in it).
const TO_V3: &str = "
CREATE INDEX IF NOT EXISTS instances_stalled_unheld ON durable.instances (created_ms, id)
    WHERE status = 'stalled' AND held_by IS NULL;
UPDATE durable.instances SET held_by = NULL
    WHERE held_by IS NOT NULL AND status IN ('completed', 'failed', 'terminated');
DROP INDEX IF EXISTS durable.instances_by_holder;
CREATE INDEX IF NOT EXISTS instances_held ON durable.instances (held_by)
    WHERE held_by IS NOT NULL;
DROP INDEX IF EXISTS durable.work_by_instance;
UPDATE durable.meta SET value = '3' WHERE key = 'schema_version';
";

/// Version 3 to version 4: the indexes by status and by creation hold orchestrations only,
/// not entities (`durable_core`'s entities are rows whose `orchestrator` starts with `@`,
/// [`crate::ENTITY_MARKER`]), which the listings, the counts and the live instances leave
/// out: a page of running orchestrations does not step over entities. The predicate is
/// the literal one `query.rs` writes, so that the planner proves the index applies; the
/// statistics on it (PostgreSQL 14 and later) tell the planner how many rows it keeps.
/// The indexes keep their names (made again, partial). Entities are listed by id, on the
/// primary key. Idempotent.
const TO_V4: &str = "
DROP INDEX IF EXISTS durable.instances_by_status;
DROP INDEX IF EXISTS durable.instances_by_created;
CREATE INDEX instances_by_status ON durable.instances (status, created_ms)
    WHERE left(orchestrator, 1) <> '@';
CREATE INDEX instances_by_created ON durable.instances (created_ms)
    WHERE left(orchestrator, 1) <> '@';
-- How many rows are entities': without it the planner guesses the predicate above keeps
-- most rows, and counts by status with a scan of the table, entities included.
CREATE STATISTICS IF NOT EXISTS durable.instances_kind ON (left(orchestrator, 1))
    FROM durable.instances;
UPDATE durable.meta SET value = '4' WHERE key = 'schema_version';
";

/// Version 4 to version 5: flow control of activities (`lease::ActivityLimits`). A claim
/// that takes a task of a limited activity, or leaves one waiting (parks it), records the
/// activity in the task's row (`work.activity`, NULL for every other item): counting the
/// tasks of an activity live workers hold reads the partial index `work_limited_held`,
/// the next claims read the first parked tasks of an activity from `work_parked` rather
/// than every waiting task from the queue, and a commit that removes such a task wakes
/// the workers waiting for a slot. `activity_starts` holds the recent starts of
/// rate-limited activities (a claim deletes those older than the period). Likewise
/// `instances.limited` marks an instance of a limited orchestrator
/// (`lease::OrchestratorLimits`) a claim started: the commit that finishes it wakes the
/// workers waiting to start the next. Idempotent.
const TO_V5: &str = "
ALTER TABLE durable.work ADD COLUMN IF NOT EXISTS activity text;
ALTER TABLE durable.instances ADD COLUMN IF NOT EXISTS limited boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS work_limited_held ON durable.work (activity)
    WHERE activity IS NOT NULL AND held_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS work_parked ON durable.work (activity, id)
    WHERE activity IS NOT NULL AND held_by IS NULL;
CREATE TABLE IF NOT EXISTS durable.activity_starts (
    activity   text        NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_starts_by_activity
    ON durable.activity_starts (activity, started_at);
UPDATE durable.meta SET value = '5' WHERE key = 'schema_version';
";

/// Checks that the database holds durable's schema in the current version, and changes
/// nothing: for tools that read a store and must not create or migrate one.
pub(super) fn check_existing(conn: &mut Conn, target: &Target) -> Result<(), StoreError> {
    let error = |doing: &'static str| move |e| target.error(doing, e);
    let client = conn.client();
    let exists: bool = client
        .query_one("SELECT to_regclass('durable.meta') IS NOT NULL", &[])
        .map_err(error("looking for durable's schema"))?
        .get(0);
    if !exists {
        return Err(StoreError::NoSchema {
            server: target.name().to_owned(),
        });
    }
    let value: Option<String> = client
        .query_opt(
            "SELECT value FROM durable.meta WHERE key = 'schema_version'",
            &[],
        )
        .map_err(error("reading the schema version"))?
        .map(|row| row.get(0));
    match value.as_deref().and_then(|v| v.parse::<u32>().ok()) {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(found) => Err(StoreError::OtherSchema {
            server: target.name().to_owned(),
            found,
            current: SCHEMA_VERSION,
        }),
        None => Err(StoreError::Io {
            detail: format!(
                "the schema `durable` of {} has no readable schema version (`durable.meta` \
                 holds {value:?} under `schema_version`); it was not made by durable",
                target.name()
            ),
            source: None,
        }),
    }
}

/// Creates the schema if the database has none, in one transaction; otherwise checks its
/// version, and migrates a schema of version 1 to 4 to the current one (in the same
/// transaction, under the same lock: its data stays).
pub(super) fn create_or_check(conn: &mut Conn, target: &Target) -> Result<(), StoreError> {
    let error = |doing: &'static str| move |e| target.error(doing, e);
    let mut tx = conn
        .client()
        .transaction()
        .map_err(error("starting the schema check"))?;
    // Two processes opening a new database at once: the second waits here, then finds the
    // schema the first created.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('durable.schema'))",
        &[],
    )
    .map_err(error("locking the schema"))?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('durable.meta') IS NOT NULL", &[])
        .map_err(error("looking for durable's schema"))?
        .get(0);
    if !exists {
        tx.batch_execute(CREATE)
            .map_err(error("creating durable's schema"))?;
        tx.execute(
            "INSERT INTO durable.meta (key, value) VALUES ('schema_version', '1')",
            &[],
        )
        .map_err(error("recording the schema version"))?;
        tx.batch_execute(TO_V2)
            .map_err(error("creating durable's schema"))?;
        tx.batch_execute(TO_V3)
            .map_err(error("creating durable's schema"))?;
        tx.batch_execute(TO_V4)
            .map_err(error("creating durable's schema"))?;
        tx.batch_execute(TO_V5)
            .map_err(error("creating durable's schema"))?;
        return tx.commit().map_err(error("creating durable's schema"));
    }
    let row = tx
        .query_opt(
            "SELECT value FROM durable.meta WHERE key = 'schema_version'",
            &[],
        )
        .map_err(error("reading the schema version"))?;
    let value: Option<String> = row.map(|row| row.get(0));
    let found = value.as_deref().and_then(|v| v.parse::<u32>().ok());
    match found {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(found @ 1..=4) => {
            let steps = [
                (TO_V2, "migrating durable's schema from version 1 to 2"),
                (TO_V3, "migrating durable's schema from version 2 to 3"),
                (TO_V4, "migrating durable's schema from version 3 to 4"),
                (TO_V5, "migrating durable's schema from version 4 to 5"),
            ];
            for (sql, doing) in &steps[found as usize - 1..] {
                tx.batch_execute(sql).map_err(error(doing))?;
            }
            tx.commit()
                .map_err(error("committing the migration of durable's schema"))
        }
        Some(found) => Err(StoreError::OtherSchema {
            server: target.name().to_owned(),
            found,
            current: SCHEMA_VERSION,
        }),
        None => Err(StoreError::Io {
            detail: format!(
                "the schema `durable` of {} has no readable schema version (`durable.meta` \
                 holds {value:?} under `schema_version`); it was not made by durable: drop it \
                 or point the store at another database",
                target.name()
            ),
            source: None,
        }),
    }
}
