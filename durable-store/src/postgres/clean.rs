//! [`Store::remove_idle_entities`](crate::Store::remove_idle_entities) on PostgreSQL: one
//! transaction that locks the entities' rows, checks them, and deletes the idle ones.
//!
//! A sender that read an entity's record and commits only a message to it expects the
//! record ([`Commit::expected`](crate::Commit::expected)): its transaction locks the row
//! (`commit.rs`, `LOCK_EXPECTED`) before it commits. So either it committed first, and
//! the queue read here (a statement after the lock, with a new snapshot under READ
//! COMMITTED) finds its message; or this transaction deleted the row first, and the
//! sender, waiting on the lock, finds no row and is refused
//! ([`StoreError::InstanceChanged`](crate::StoreError::InstanceChanged)), and makes the
//! entity again.

use std::collections::HashSet;

use super::connect::{Conn, Target};
use super::pool::Failure;
use super::read::instance_row;
use crate::query::is_empty_entity;

/// Locks the rows of `$1` and reads them, with their holders. A row another transaction
/// has locked is being written, or expected by a sender: it is not idle, and is skipped
/// rather than waited for (a wait could close a cycle with a commit that locks rows in
/// two statements, and PostgreSQL would abort one of them).
const LOCK: &str = "SELECT id, record, held_by FROM durable.instances WHERE id = ANY($1) \
                    ORDER BY id FOR UPDATE SKIP LOCKED";

/// The workers of `$1` whose lease has not expired.
const LIVE: &str = "SELECT id FROM durable.workers WHERE id = ANY($1) AND expires_at > now()";

/// The instances of `$1` some work item is addressed to. `work` has no index by instance
/// (each item would pay for an entry): this reads the queue, as a clean is rare.
const ADDRESSED: &str = "SELECT DISTINCT instance_id FROM durable.work WHERE instance_id = ANY($1)";

const REMOVE: &str = "DELETE FROM durable.instances WHERE id = ANY($1)";

/// The body of [`Store::remove_idle_entities`](crate::Store::remove_idle_entities).
pub(super) fn remove_idle(
    conn: &mut Conn,
    target: &Target,
    ids: &[String],
) -> Result<Vec<String>, Failure> {
    let unapplied = |doing: &'static str| {
        move |e: postgres::Error| Failure {
            error: target.error(doing, e),
            unapplied: true,
        }
    };
    let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
    let mut tx = conn
        .transaction()
        .map_err(unapplied("starting a clean of entities"))?;
    let rows = tx
        .query(LOCK, &[&keys])
        .map_err(unapplied("locking entities"))?;
    let mut candidates: Vec<(String, Option<i64>)> = Vec::new();
    for row in &rows {
        let (id, record) = instance_row(row)?;
        if is_empty_entity(&record) {
            candidates.push((id, row.get(2)));
        }
    }
    let holders: Vec<i64> = candidates.iter().filter_map(|(_, h)| *h).collect();
    let live: HashSet<i64> = if holders.is_empty() {
        HashSet::new()
    } else {
        (tx.query(LIVE, &[&holders])
            .map_err(unapplied("reading workers"))?)
        .iter()
        .map(|row| row.get(0))
        .collect()
    };
    candidates.retain(|(_, holder)| holder.is_none_or(|h| !live.contains(&h)));
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&[u8]> = candidates.iter().map(|(id, _)| id.as_bytes()).collect();
    let addressed: HashSet<Vec<u8>> = (tx.query(ADDRESSED, &[&keys]))
        .map_err(unapplied("reading the work queue"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let idle: Vec<String> = (candidates.into_iter())
        .map(|(id, _)| id)
        .filter(|id| !addressed.contains(id.as_bytes()))
        .collect();
    if idle.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&[u8]> = idle.iter().map(|id| id.as_bytes()).collect();
    tx.query(REMOVE, &[&keys])
        .map_err(unapplied("removing idle entities"))?;
    // Whether a COMMIT whose answer was lost was applied, no one can tell.
    tx.commit().map_err(|e| Failure {
        error: target.error("committing a clean of entities", e),
        unapplied: false,
    })?;
    Ok(idle)
}
