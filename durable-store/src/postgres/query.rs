//! The listings of [`PostgresStore`](super::PostgresStore) in SQL on `instances`: pages by
//! a keyset on (`created_ms`, `id`), counts by `GROUP BY status`, the live instances by
//! status; read through the indexes `instances_by_status` (`status`, `created_ms`),
//! `instances_by_orchestrator` (`hashtext(orchestrator)`, `created_ms`) and
//! `instances_by_created` (`created_ms`). Each statement leaves entities out with
//! [`ORCHESTRATIONS`], the predicate of the two partial indexes; the entities of a type
//! are a range of the primary key ([`with_prefix`]). The indexes hold no id and no name, so an id or
//! a name as long as the primary key takes fits them too (a btree row holds 2,704
//! bytes); instances created in the same millisecond are sorted by id after the index.
//!
//! bytea compares byte by byte, as Rust's `String` does, so `ORDER BY created_ms, id` is
//! the order of [`InstanceCursor`] for every time below 2^63 ms (the bigint holds the
//! u64's bits, `apply.rs`). A bound past 2^63 is not sent to the server: every row is
//! checked against the filter and the cursor here too, so SQL only narrows the rows read.

use postgres::types::ToSql;

use super::columns;
use super::connect::{Conn, Target};
use super::read::instance_row;
use crate::error::StoreError;
use crate::query::{
    InstanceCursor, InstanceFilter, InstancePage, LIVE_STATUSES, StatusCounts, page_of, zero_counts,
};
use crate::record::{InstanceRecord, StatusKind};

/// The rows of orchestrations, not of entities (whose `orchestrator` starts with
/// [`ENTITY_MARKER`](crate::ENTITY_MARKER)): the predicate of the partial indexes
/// `instances_by_status` and `instances_by_created` (`schema.rs`), written as
/// there so that the planner matches them.
const ORCHESTRATIONS: &str = "left(orchestrator, 1) <> '@'";

const COUNTS: &str = "SELECT status, count(*) FROM durable.instances \
                      WHERE left(orchestrator, 1) <> '@' GROUP BY status";

const LIVE: &str = "SELECT id, record FROM durable.instances WHERE status = ANY($1::text[]) \
                    AND left(orchestrator, 1) <> '@' ORDER BY created_ms, id";

/// A time as the bigint it is stored as, if it is below 2^63 (the ones SQL compares).
fn bigint(ms: u64) -> Option<i64> {
    i64::try_from(ms).ok()
}

/// One statement of a listing: the SQL and its parameters.
struct Select {
    sql: String,
    params: Vec<Box<dyn ToSql + Sync>>,
}

impl Select {
    /// The condition `condition`, its `$` taken by `param`.
    fn and(&mut self, condition: &str, param: impl ToSql + Sync + 'static) {
        self.params.push(Box::new(param));
        let n = self.params.len();
        self.sql.push_str(&format!(
            " AND {}",
            condition.replace('$', &format!("${n}"))
        ));
    }
}

/// The statement of the rows of `filter` after the row at (`created`, `id`), in creation
/// order, at most `limit`.
fn select(
    filter: &InstanceFilter,
    kinds: &[StatusKind],
    after: Option<(i64, &[u8])>,
    limit: i64,
) -> Select {
    let mut select = Select {
        sql: format!("SELECT id, record FROM durable.instances WHERE {ORCHESTRATIONS}"),
        params: Vec::new(),
    };
    if kinds.len() < StatusKind::ALL.len() {
        let names: Vec<&'static str> = kinds.iter().map(|kind| kind.as_str()).collect();
        select.and("status = ANY($::text[])", names);
    }
    if let Some(orchestrator) = &filter.orchestrator {
        select.and(
            "hashtext(orchestrator) = hashtext($::text) AND orchestrator = $::text",
            columns::text(orchestrator).into_owned(),
        );
    }
    if let Some(from) = filter.created_from_ms.and_then(bigint) {
        select.and("created_ms >= $", from);
    }
    if let Some(before) = filter.created_before_ms.and_then(bigint) {
        select.and("created_ms < $", before);
    }
    if let Some(before) = filter.finished_before_ms.and_then(bigint) {
        select.and("updated_ms < $", before);
    }
    if let Some((created, id)) = after {
        select.params.push(Box::new(created));
        select.params.push(Box::new(id.to_vec()));
        let n = select.params.len();
        select.sql.push_str(&format!(
            " AND (created_ms, id) > (${}::bigint, ${n}::bytea)",
            n - 1
        ));
    }
    select.params.push(Box::new(limit));
    let n = select.params.len();
    select
        .sql
        .push_str(&format!(" ORDER BY created_ms, id LIMIT ${n}"));
    select
}

/// [`Store::list_instances`](crate::Store::list_instances).
pub(super) fn list(
    conn: &mut Conn,
    target: &Target,
    filter: &InstanceFilter,
    after: Option<&InstanceCursor>,
    limit: usize,
) -> Result<InstancePage, StoreError> {
    let kinds = filter.status_kinds();
    if kinds.is_empty() {
        return Ok(InstancePage::default());
    }
    // One more than the page, to know whether another follows.
    let wanted = limit.max(1).saturating_add(1);
    let batch = i64::try_from(wanted).unwrap_or(i64::MAX);
    let mut found: Vec<(InstanceCursor, InstanceRecord)> = Vec::new();
    // Where SQL resumes: after the cursor, then after the last row read.
    let mut resume: Option<(i64, Vec<u8>)> = after.and_then(|after| {
        bigint(after.created_ms).map(|created| (created, after.id.as_bytes().to_vec()))
    });
    loop {
        let select = select(
            filter,
            &kinds,
            resume
                .as_ref()
                .map(|(created, id)| (*created, id.as_slice())),
            batch,
        );
        let params: Vec<&(dyn ToSql + Sync)> = select.params.iter().map(|p| &**p).collect();
        let rows = conn
            .client()
            .query(&select.sql, &params)
            .map_err(|e| target.error("listing instances", e))?;
        let read = rows.len();
        for row in &rows {
            let (id, record) = instance_row(row)?;
            let cursor = InstanceCursor::of(&id, &record);
            resume = bigint(record.created_ms).map(|created| (created, id.into_bytes()));
            // SQL may pass more than the filter (a bound past 2^63, a NUL shown as U+FFFD
            // in `orchestrator`): the filter decides.
            if filter.matches(&record) && after.is_none_or(|after| cursor > *after) {
                found.push((cursor, record));
            }
        }
        if found.len() >= wanted || read < wanted || resume.is_none() {
            break;
        }
    }
    Ok(page_of(found, limit))
}

/// [`Store::count_by_status`](crate::Store::count_by_status).
pub(super) fn counts(conn: &mut Conn, target: &Target) -> Result<StatusCounts, StoreError> {
    let rows = conn
        .query(COUNTS, &[])
        .map_err(|e| target.error("counting instances by status", e))?;
    let mut counts = zero_counts();
    for row in &rows {
        let name: &str = row.get(0);
        let count: i64 = row.get(1);
        let kind = StatusKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| StoreError::Decode {
                what: format!("status {name:?} (table `instances`)"),
                detail: "not a status durable writes".to_owned(),
                source: None,
            })?;
        counts.insert(kind, count.unsigned_abs());
    }
    Ok(counts)
}

/// [`Store::live_instances`](crate::Store::live_instances).
pub(super) fn live(
    conn: &mut Conn,
    target: &Target,
) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
    let names: Vec<&'static str> = LIVE_STATUSES.iter().map(|kind| kind.as_str()).collect();
    let rows = conn
        .query(LIVE, &[&names])
        .map_err(|e| target.error("reading the live instances", e))?;
    let mut live = rows
        .iter()
        .map(instance_row)
        .collect::<Result<Vec<_>, _>>()?;
    // Already in creation order but for times past 2^63 (stored as negative bigints).
    live.sort_by_cached_key(|(id, record)| InstanceCursor::of(id, record));
    Ok(live)
}

/// The first byte string after every one that starts with `prefix`; `None` if there is
/// none (`prefix` is empty or all `0xFF`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while end.last() == Some(&0xFF) {
        end.pop();
    }
    *end.last_mut()? += 1;
    Some(end)
}

/// [`Store::instances_with_prefix`](crate::Store::instances_with_prefix): a range of the
/// primary key.
pub(super) fn with_prefix(
    conn: &mut Conn,
    target: &Target,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut sql = "SELECT id, record FROM durable.instances WHERE ".to_owned();
    match after {
        Some(after) if after >= prefix => {
            params.push(Box::new(after.as_bytes().to_vec()));
            sql.push_str("id > $1");
        }
        _ => {
            params.push(Box::new(prefix.as_bytes().to_vec()));
            sql.push_str("id >= $1");
        }
    }
    if let Some(end) = prefix_end(prefix.as_bytes()) {
        params.push(Box::new(end));
        sql.push_str(" AND id < $2");
    }
    params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", params.len()));
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p).collect();
    let rows = conn
        .client()
        .query(&sql, &params)
        .map_err(|e| target.error("listing instances by id", e))?;
    rows.iter().map(instance_row).collect()
}
