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

/// Ends a lease. It waits for a commit of the worker being written (which locks the
/// lease row, see `apply.rs`), or makes one that comes after it find the lease gone.
const LEAVE: &str = "DELETE FROM durable.workers WHERE id = $1";

/// Releases what the worker `$1`, whose lease [`LEAVE`] ended, held; wakes the waiters. A
/// statement of its own, after [`LEAVE`] in the same transaction, so that it sees what a
/// commit that [`LEAVE`] waited for wrote: in one statement (one snapshot, taken before
/// that commit ended) the rows that commit wrote stayed held by a worker that no longer
/// exists, which no claim takes.
const RELEASE_LEFT: &str = "WITH instances AS ( \
        UPDATE durable.instances SET held_by = NULL WHERE held_by = $1), \
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

/// [`Store::leave`](crate::Store::leave): the lease row goes, then the holdings are
/// released and the waiters woken, in one transaction.
pub(super) fn leave(conn: &mut Conn, target: &Target, worker: WorkerId) -> Result<(), StoreError> {
    let error = |e| target.error("ending a worker's lease", e);
    let key = worker_key(worker);
    let mut tx = conn.transaction().map_err(error)?;
    tx.query(LEAVE, &[&key]).map_err(error)?;
    tx.query(RELEASE_LEFT, &[&key]).map_err(error)?;
    tx.commit().map_err(error)
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
