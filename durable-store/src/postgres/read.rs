//! The reads of [`PostgresStore`](super::PostgresStore): each one statement, decoding the
//! postcard records.

use postgres::Row;

use super::connect::{Conn, Target};
use crate::error::{StoreError, cause};
use crate::record::{Event, InstanceRecord, WorkId, WorkItem, decode};

const INSTANCE: &str = "SELECT record FROM durable.instances WHERE id = $1";

const INSTANCES: &str = "SELECT id, record FROM durable.instances ORDER BY id";

const HISTORY: &str = "SELECT idx, record FROM durable.history WHERE instance_id = $1 ORDER BY idx";

const WORK: &str = "SELECT id, record FROM durable.work";

const PROGRESS: &str = "SELECT value FROM durable.progress WHERE key = $1";

pub(super) fn instance(
    conn: &mut Conn,
    target: &Target,
    id: &str,
) -> Result<Option<InstanceRecord>, StoreError> {
    let rows = conn
        .query(INSTANCE, &[&id.as_bytes()])
        .map_err(|e| target.error("reading an instance", e))?;
    rows.first()
        .map(|row| {
            decode(row.get(0), || {
                format!("instance record `{id}` (table `instances`)")
            })
        })
        .transpose()
}

pub(super) fn instances(
    conn: &mut Conn,
    target: &Target,
) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
    let rows = conn
        .query(INSTANCES, &[])
        .map_err(|e| target.error("reading instances", e))?;
    rows.iter().map(instance_row).collect()
}

/// The id and record of a row whose first columns are `id` and `record` of `instances`.
pub(super) fn instance_row(row: &Row) -> Result<(String, InstanceRecord), StoreError> {
    let key: Vec<u8> = row.get(0);
    let id = String::from_utf8(key).map_err(|e| StoreError::Decode {
        what: format!("instance id {:?} (table `instances`)", e.as_bytes()),
        detail: e.to_string(),
        source: cause(e.utf8_error()),
    })?;
    let record = decode(row.get(1), || {
        format!("instance record `{id}` (table `instances`)")
    })?;
    Ok((id, record))
}

pub(super) fn history(
    conn: &mut Conn,
    target: &Target,
    id: &str,
) -> Result<Vec<Event>, StoreError> {
    let rows = conn
        .query(HISTORY, &[&id.as_bytes()])
        .map_err(|e| target.error("reading a history", e))?;
    rows.iter()
        .map(|row| {
            let index: i64 = row.get(0);
            decode(row.get(1), || {
                format!("event {index} of `{id}` (table `history`)")
            })
        })
        .collect()
}

pub(super) fn work_items(
    conn: &mut Conn,
    target: &Target,
) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
    let rows = conn
        .query(WORK, &[])
        .map_err(|e| target.error("reading the work queue", e))?;
    let mut items = rows
        .iter()
        .map(|row| {
            // The bigint holds the WorkId's bits (`commit::work_key`).
            let id = row.get::<_, i64>(0) as WorkId;
            let item = decode(row.get(1), || format!("work item {id} (table `work`)"))?;
            Ok((id, item))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // In u64 order, which the bigint's order is not past 2^63.
    items.sort_unstable_by_key(|(id, _)| *id);
    Ok(items)
}

pub(super) fn progress(
    conn: &mut Conn,
    target: &Target,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let rows = conn
        .query(PROGRESS, &[&key.as_bytes()])
        .map_err(|e| target.error("reading progress", e))?;
    Ok(rows.first().map(|row| row.get(0)))
}
