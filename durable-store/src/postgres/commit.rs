//! How [`PostgresStore`](super::PostgresStore) writes a call to `commit`: its commits
//! folded into the net change per key, written in one transaction with one multi-row
//! statement per table and operation.

use std::collections::{BTreeMap, HashMap};

use postgres::error::SqlState;

use super::columns;
use super::connect::{Conn, Prepared, Target};
use super::pool::Failure;
use crate::error::{KeyKind, StoreError, cause};
use crate::keys;
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};

/// The longest key a btree index of PostgreSQL holds (a third of an 8 KiB page, less
/// the row's header): a longer key is refused unless it compresses below it.
const MAX_INDEXED_KEY: usize = 2704;

/// The appends whose start must match the stored history, as (id, first): the rows of
/// histories that hold events and do not end at `first`, with where they end.
const FENCE: &str = "
SELECT f.id, f.first, h.stored
FROM unnest($1::bytea[], $2::bigint[]) AS f(id, first)
CROSS JOIN LATERAL (
    SELECT max(idx) + 1 AS stored FROM durable.history WHERE instance_id = f.id
) AS h
WHERE h.stored IS NOT NULL AND h.stored <> f.first
LIMIT 1";

const DELETE_HISTORIES: &str = "DELETE FROM durable.history WHERE instance_id = ANY($1::bytea[])";

const DELETE_INSTANCES: &str = "DELETE FROM durable.instances WHERE id = ANY($1::bytea[])";

const UPSERT_INSTANCES: &str = "
INSERT INTO durable.instances
    (id, orchestrator, status, history_len, created_ms, updated_ms, input, output,
     custom_status, record)
SELECT id, orchestrator, status, history_len, created_ms, updated_ms, input::json,
       output::json, custom_status::json, record
FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
            $7::text[], $8::text[], $9::text[], $10::bytea[])
    AS t(id, orchestrator, status, history_len, created_ms, updated_ms, input, output,
         custom_status, record)
ON CONFLICT (id) DO UPDATE SET
    orchestrator = EXCLUDED.orchestrator, status = EXCLUDED.status,
    history_len = EXCLUDED.history_len, created_ms = EXCLUDED.created_ms,
    updated_ms = EXCLUDED.updated_ms, input = EXCLUDED.input, output = EXCLUDED.output,
    custom_status = EXCLUDED.custom_status, record = EXCLUDED.record";

const INSERT_EVENTS: &str = "
INSERT INTO durable.history (instance_id, idx, kind, payload, record)
SELECT instance_id, idx, kind, payload::json, record
FROM unnest($1::bytea[], $2::bigint[], $3::text[], $4::text[], $5::bytea[])
    AS t(instance_id, idx, kind, payload, record)";

const DELETE_WORK: &str = "DELETE FROM durable.work WHERE id = ANY($1::bigint[])";

const UPSERT_WORK: &str = "
INSERT INTO durable.work (id, kind, instance_id, payload, record)
SELECT id, kind, instance_id, payload::json, record
FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::bytea[])
    AS t(id, kind, instance_id, payload, record)
ON CONFLICT (id) DO UPDATE SET
    kind = EXCLUDED.kind, instance_id = EXCLUDED.instance_id, payload = EXCLUDED.payload,
    record = EXCLUDED.record";

const DELETE_PROGRESS: &str = "DELETE FROM durable.progress WHERE key = ANY($1::bytea[])";

const UPSERT_PROGRESS: &str = "
INSERT INTO durable.progress (key, json, value)
SELECT key, json::json, value FROM unnest($1::bytea[], $2::text[], $3::bytea[])
    AS t(key, json, value)
ON CONFLICT (key) DO UPDATE SET json = EXCLUDED.json, value = EXCLUDED.value";

/// What one history does within a call.
#[derive(Default)]
struct HistoryChange<'a> {
    /// Whether the call removes the stored history.
    removed: bool,
    /// Where the history ends after the call's changes so far; `None` while that depends on
    /// the stored history.
    end: Option<u64>,
    /// The events to insert, as (index, event).
    events: Vec<(u32, &'a Event)>,
}

/// The net change of a call to `commit`.
pub(super) struct Plan<'a> {
    /// Last write per instance id: `Some` writes the record, `None` removes it.
    instances: BTreeMap<&'a str, Option<&'a InstanceRecord>>,
    /// Per history, in first-touched order.
    histories: Vec<(&'a str, HistoryChange<'a>)>,
    /// Appends whose start is checked against the stored history, as (id, first).
    fences: Vec<(&'a str, u32)>,
    /// Last write per work id.
    work: BTreeMap<WorkId, Option<&'a WorkItem>>,
    /// Last write per progress key.
    progress: BTreeMap<&'a str, Option<&'a [u8]>>,
}

impl<'a> Plan<'a> {
    /// Folds `commits`, in order, into their net change.
    ///
    /// # Errors
    ///
    /// [`StoreError::HistoryConflict`] if an append does not start where an earlier one of
    /// the call left its history.
    pub(super) fn of(commits: &'a [Commit]) -> Result<Self, StoreError> {
        let mut plan = Plan {
            instances: BTreeMap::new(),
            histories: Vec::new(),
            fences: Vec::new(),
            work: BTreeMap::new(),
            progress: BTreeMap::new(),
        };
        let mut slots: HashMap<&str, usize> = HashMap::new();
        let mut history = |id: &'a str, plan: &mut Plan<'a>| -> usize {
            *slots.entry(id).or_insert_with(|| {
                plan.histories.push((id, HistoryChange::default()));
                plan.histories.len() - 1
            })
        };
        for commit in commits {
            for (id, _) in &commit.histories_removed {
                let slot = history(id, &mut plan);
                let change = &mut plan.histories[slot].1;
                change.removed = true;
                change.end = Some(0);
                change.events.clear();
            }
            for id in &commit.instances_removed {
                plan.instances.insert(id, None);
            }
            for (id, record) in &commit.instances {
                plan.instances.insert(id, Some(record));
            }
            for append in &commit.history {
                let id = append.instance.as_str();
                let slot = history(id, &mut plan);
                let change = &mut plan.histories[slot].1;
                match change.end {
                    None => plan.fences.push((id, append.first)),
                    // A history emptied by this call takes an append anywhere, as a stored
                    // history with no events does.
                    Some(_) if change.events.is_empty() => {}
                    Some(end) if end == u64::from(append.first) => {}
                    Some(end) => {
                        return Err(StoreError::HistoryConflict {
                            instance: id.to_owned(),
                            first: append.first,
                            stored: u32::try_from(end).unwrap_or(u32::MAX),
                        });
                    }
                }
                change.end = Some(u64::from(append.first) + append.events.len() as u64);
                // `keys::check` made sure every index fits in a u32.
                change
                    .events
                    .extend((append.first..=u32::MAX).zip(&append.events));
            }
            for id in &commit.dequeued {
                plan.work.insert(*id, None);
            }
            for (id, item) in &commit.enqueued {
                plan.work.insert(*id, Some(item));
            }
            for (key, value) in &commit.progress {
                plan.progress.insert(key, value.as_deref());
            }
        }
        Ok(plan)
    }

    /// Writes the plan in one transaction on `conn`.
    pub(super) fn write(&self, conn: &mut Conn, target: &Target) -> Result<(), Failure> {
        let error = |doing: &'static str| {
            move |e: WriteError| match &e {
                WriteError::Sql(sql) if sql.code() == Some(&SqlState::PROGRAM_LIMIT_EXCEEDED) => {
                    self.oversized_key()
                        .unwrap_or_else(|| write_error(target, doing, e))
                }
                _ => write_error(target, doing, e),
            }
        };
        let mut tx = conn
            .transaction()
            .map_err(|e| write_error(target, "starting a commit", e))?;
        self.check_fences(&mut tx, target)?;
        self.write_instances(&mut tx)
            .map_err(error("writing instances"))?;
        self.write_histories(&mut tx)
            .map_err(error("writing histories"))?;
        self.write_work(&mut tx)
            .map_err(error("writing work items"))?;
        self.write_progress(&mut tx)
            .map_err(error("writing progress"))?;
        // Whether a COMMIT whose answer was lost was applied, no one can tell.
        tx.commit().map_err(|e| Failure {
            error: write_error(target, "committing", e),
            unapplied: false,
        })
    }

    /// The first key too long for PostgreSQL's index, as [`StoreError::InvalidKey`]: what
    /// a statement refused with `program_limit_exceeded` (SQLSTATE 54000) was refused for.
    /// Only a key longer than [`MAX_INDEXED_KEY`] can be; which such key it was, the
    /// server does not say.
    fn oversized_key(&self) -> Option<StoreError> {
        let ids = self
            .instances
            .keys()
            .chain(self.histories.iter().map(|(id, _)| id))
            .map(|id| (KeyKind::InstanceId, *id));
        let progress = self.progress.keys().map(|key| (KeyKind::ProgressKey, *key));
        let (kind, key) = ids
            .chain(progress)
            .find(|(_, key)| key.len() > MAX_INDEXED_KEY)?;
        Some(keys::invalid(
            kind,
            key,
            format!(
                "it is {} bytes long, and PostgreSQL's index holds a key of at most \
                 {MAX_INDEXED_KEY} bytes once compressed; use a shorter one",
                key.len()
            ),
        ))
    }

    fn check_fences(&self, tx: &mut Prepared<'_>, target: &Target) -> Result<(), StoreError> {
        if self.fences.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = self.fences.iter().map(|(id, _)| id.as_bytes()).collect();
        let firsts: Vec<i64> = self.fences.iter().map(|(_, f)| i64::from(*f)).collect();
        let rows = tx
            .query(FENCE, &[&ids, &firsts])
            .map_err(|e| write_error(target, "checking history lengths", e))?;
        let Some(row) = rows.first() else {
            return Ok(());
        };
        let (id, first, stored): (Vec<u8>, i64, i64) = (row.get(0), row.get(1), row.get(2));
        Err(StoreError::HistoryConflict {
            instance: String::from_utf8_lossy(&id).into_owned(),
            first: u32::try_from(first).unwrap_or(u32::MAX),
            stored: u32::try_from(stored).unwrap_or(u32::MAX),
        })
    }

    fn write_instances(&self, tx: &mut Prepared<'_>) -> Result<(), WriteError> {
        let removed: Vec<&[u8]> = self
            .instances
            .iter()
            .filter(|(_, record)| record.is_none())
            .map(|(id, _)| id.as_bytes())
            .collect();
        if !removed.is_empty() {
            tx.execute(DELETE_INSTANCES, &[&removed])?;
        }
        let written: Vec<(&str, &InstanceRecord)> = self
            .instances
            .iter()
            .filter_map(|(id, record)| Some((*id, (*record)?)))
            .collect();
        if written.is_empty() {
            return Ok(());
        }
        let mut columns = InstanceColumns::default();
        for (id, record) in written {
            columns.push(id, record)?;
        }
        let c = &columns;
        tx.execute(
            UPSERT_INSTANCES,
            &[
                &c.ids,
                &c.orchestrators,
                &c.statuses,
                &c.history_lens,
                &c.created,
                &c.updated,
                &c.inputs,
                &c.outputs,
                &c.custom_statuses,
                &c.records,
            ],
        )?;
        Ok(())
    }

    fn write_histories(&self, tx: &mut Prepared<'_>) -> Result<(), WriteError> {
        let removed: Vec<&[u8]> = self
            .histories
            .iter()
            .filter(|(_, change)| change.removed)
            .map(|(id, _)| id.as_bytes())
            .collect();
        if !removed.is_empty() {
            tx.execute(DELETE_HISTORIES, &[&removed])?;
        }
        let count = self.histories.iter().map(|(_, c)| c.events.len()).sum();
        if count == 0 {
            return Ok(());
        }
        let mut ids: Vec<&[u8]> = Vec::with_capacity(count);
        let mut indices: Vec<i64> = Vec::with_capacity(count);
        let mut kinds: Vec<&str> = Vec::with_capacity(count);
        let mut payloads: Vec<Option<&str>> = Vec::with_capacity(count);
        let mut records: Vec<Vec<u8>> = Vec::with_capacity(count);
        for (id, change) in &self.histories {
            for (index, event) in &change.events {
                ids.push(id.as_bytes());
                indices.push(i64::from(*index));
                kinds.push(columns::event_kind(event));
                payloads.push(columns::event_payload(event));
                records.push(encode(event, || format!("event {index} of `{id}`"))?);
            }
        }
        tx.execute(
            INSERT_EVENTS,
            &[&ids, &indices, &kinds, &payloads, &records],
        )?;
        Ok(())
    }

    fn write_work(&self, tx: &mut Prepared<'_>) -> Result<(), WriteError> {
        let removed: Vec<i64> = self
            .work
            .iter()
            .filter(|(_, item)| item.is_none())
            .map(|(id, _)| work_key(*id))
            .collect();
        if !removed.is_empty() {
            tx.execute(DELETE_WORK, &[&removed])?;
        }
        let (mut ids, mut kinds, mut instances, mut payloads, mut records) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, item) in &self.work {
            let Some(item) = item else { continue };
            let (kind, instance, payload) = columns::work_columns(item);
            ids.push(work_key(*id));
            kinds.push(kind);
            instances.push(instance.as_bytes());
            payloads.push(payload);
            records.push(encode(item, || format!("work item {id}"))?);
        }
        if !ids.is_empty() {
            tx.execute(
                UPSERT_WORK,
                &[&ids, &kinds, &instances, &payloads, &records],
            )?;
        }
        Ok(())
    }

    fn write_progress(&self, tx: &mut Prepared<'_>) -> Result<(), WriteError> {
        let removed: Vec<&[u8]> = self
            .progress
            .iter()
            .filter(|(_, value)| value.is_none())
            .map(|(key, _)| key.as_bytes())
            .collect();
        if !removed.is_empty() {
            tx.execute(DELETE_PROGRESS, &[&removed])?;
        }
        let (mut keys, mut jsons, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in &self.progress {
            let Some(value) = value else { continue };
            keys.push(key.as_bytes());
            jsons.push(columns::json(value));
            values.push(*value);
        }
        if !keys.is_empty() {
            tx.execute(UPSERT_PROGRESS, &[&keys, &jsons, &values])?;
        }
        Ok(())
    }
}

/// The columns of the instance rows of one statement.
#[derive(Default)]
struct InstanceColumns<'a> {
    ids: Vec<&'a [u8]>,
    orchestrators: Vec<&'a str>,
    statuses: Vec<&'static str>,
    history_lens: Vec<i64>,
    created: Vec<i64>,
    updated: Vec<i64>,
    inputs: Vec<Option<&'a str>>,
    outputs: Vec<Option<&'a str>>,
    custom_statuses: Vec<Option<&'a str>>,
    records: Vec<Vec<u8>>,
}

impl<'a> InstanceColumns<'a> {
    fn push(&mut self, id: &'a str, record: &'a InstanceRecord) -> Result<(), WriteError> {
        self.ids.push(id.as_bytes());
        self.orchestrators.push(&record.orchestrator);
        self.statuses.push(record.status.name());
        self.history_lens.push(i64::from(record.history_len));
        // Milliseconds since 1970 fit in an i64 for 292 million years.
        self.created.push(record.created_ms as i64);
        self.updated.push(record.updated_ms as i64);
        self.inputs.push(columns::json(&record.input));
        self.outputs.push(columns::instance_output(record));
        self.custom_statuses
            .push(record.custom_status.as_deref().and_then(columns::json));
        self.records
            .push(encode(record, || format!("instance record `{id}`"))?);
        Ok(())
    }
}

/// The bigint that stores a [`WorkId`]: the same 64 bits.
pub(super) fn work_key(id: WorkId) -> i64 {
    id as i64
}

/// A failed write: a record that does not encode, or the statement's error.
enum WriteError {
    Encode(StoreError),
    Sql(postgres::Error),
}

impl From<postgres::Error> for WriteError {
    fn from(e: postgres::Error) -> Self {
        WriteError::Sql(e)
    }
}

fn encode<T: serde::Serialize>(
    value: &T,
    what: impl FnOnce() -> String,
) -> Result<Vec<u8>, WriteError> {
    postcard::to_allocvec(value).map_err(|e| {
        WriteError::Encode(StoreError::Io {
            detail: format!("cannot encode {}: {e}", what()),
            source: cause(e),
        })
    })
}

/// What a failed write means; two writers appending at the same index of a history meet
/// on its primary key, which is a [`StoreError::HistoryConflict`].
fn write_error(target: &Target, doing: &'static str, e: impl Into<WriteError>) -> StoreError {
    let e = match e.into() {
        WriteError::Encode(e) => return e,
        WriteError::Sql(e) => e,
    };
    let db = e.as_db_error();
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && db.and_then(|db| db.constraint()) == Some("history_pkey")
        && let Some((instance, index)) = db.and_then(|db| db.detail()).and_then(duplicate_key)
    {
        return StoreError::HistoryConflict {
            instance,
            first: index,
            stored: index.saturating_add(1),
        };
    }
    target.error(doing, e)
}

/// The instance id and index of a duplicate history key, from the detail of the unique
/// violation: `Key (instance_id, idx)=(\x6f72, 3) already exists.`
fn duplicate_key(detail: &str) -> Option<(String, u32)> {
    let rest = detail.split_once("=(\\x")?.1;
    let (hex, rest) = rest.split_once(", ")?;
    let index = rest.split_once(')')?.0.parse().ok()?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((String::from_utf8_lossy(&bytes).into_owned(), index))
}
