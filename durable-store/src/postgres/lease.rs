//! The leases of [`PostgresStore`](super::PostgresStore)'s workers, by the database's clock:
//! `durable.workers` holds each live worker's expiry; an expired row is deleted by the next
//! claim (`claim.rs`), which is what lets it take the worker's holdings over.

use std::time::Duration;

use super::commit::worker_key;
use super::connect::{Conn, Target};
use crate::error::StoreError;
use crate::lease::WorkerId;
use crate::record::WorkId;

/// The channel `NOTIFY`ed when work is left for any worker to claim.
pub(super) const CHANNEL: &str = "durable_work";

const JOIN: &str = "INSERT INTO durable.workers (id, expires_at) \
    VALUES (nextval('durable.worker_ids'), now() + $1::bigint * interval '1 microsecond') \
    RETURNING id";

const RENEW: &str = "UPDATE durable.workers \
    SET expires_at = now() + $2::bigint * interval '1 microsecond' \
    WHERE id = $1 AND expires_at > now() RETURNING id";

/// Ends a lease and releases what the worker held, in one statement; wakes the waiters.
const LEAVE: &str = "WITH gone AS (DELETE FROM durable.workers WHERE id = $1), \
    instances AS (UPDATE durable.instances SET held_by = NULL WHERE held_by = $1), \
    items AS (UPDATE durable.work SET held_by = NULL WHERE held_by = $1) \
    SELECT pg_notify('durable_work', '')";

/// Takes `$1` ids from the counter, above every stored id.
const RESERVE: &str = "UPDATE durable.work_ids \
    SET next = GREATEST(next, (SELECT COALESCE(max(id) + 1, 0) FROM durable.work)) + $1 \
    RETURNING next - $1";

/// A lease as microseconds, as the statements take it.
fn micros(lease: Duration) -> i64 {
    i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2)
}

/// [`Store::join`](crate::Store::join): a new worker whose lease ends `lease` from now.
pub(super) fn join(
    conn: &mut Conn,
    target: &Target,
    lease: Duration,
) -> Result<WorkerId, StoreError> {
    let rows = conn
        .query(JOIN, &[&micros(lease)])
        .map_err(|e| target.error("starting a worker's lease", e))?;
    let id: i64 = rows.first().map_or(0, |row| row.get(0));
    Ok(id as WorkerId)
}

/// [`Store::renew`](crate::Store::renew): only a live lease is extended.
pub(super) fn renew(
    conn: &mut Conn,
    target: &Target,
    worker: WorkerId,
    lease: Duration,
) -> Result<(), StoreError> {
    let rows = conn
        .query(RENEW, &[&worker_key(worker), &micros(lease)])
        .map_err(|e| target.error("renewing a worker's lease", e))?;
    if rows.is_empty() {
        return Err(StoreError::LeaseExpired { worker });
    }
    Ok(())
}

/// [`Store::leave`](crate::Store::leave): the lease row goes, the holdings are released,
/// and the waiters are woken, in one statement.
pub(super) fn leave(conn: &mut Conn, target: &Target, worker: WorkerId) -> Result<(), StoreError> {
    conn.query(LEAVE, &[&worker_key(worker)])
        .map_err(|e| target.error("ending a worker's lease", e))?;
    Ok(())
}

/// [`Store::reserve_work_ids`](crate::Store::reserve_work_ids): the row lock of `work_ids`
/// makes concurrent reservations take turns, so no two get the same range.
pub(super) fn reserve(conn: &mut Conn, target: &Target, count: u64) -> Result<WorkId, StoreError> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let rows = conn
        .query(RESERVE, &[&count])
        .map_err(|e| target.error("reserving work ids", e))?;
    let first: i64 = rows.first().map_or(0, |row| row.get(0));
    Ok(first as WorkId)
}
