//! [`PostgresStore`]: the [`Store`] on a PostgreSQL server (feature `postgres`).
//!
//! # Schema
//!
//! Everything lives in the schema `durable` of the database the URL names, created in one
//! transaction by the first [`PostgresStore::open`] (see `schema.rs` for the DDL), which
//! also migrates a database of version 1 to 4 to [`SCHEMA_VERSION`] 5 (in one transaction,
//! under the same advisory lock; the data stays):
//!
//! | table       | key                        | columns                                                  |
//! |-------------|----------------------------|----------------------------------------------------------|
//! | `meta`      | `key` text                 | `value`: `schema_version` → [`SCHEMA_VERSION`]           |
//! | `instances` | `id` bytea                 | `orchestrator`, `status`, `history_len`, `created_ms`, `updated_ms`, `input`, `output`, `custom_status`, `record`, `held_by`, `limited` (started under an orchestrator's limit) |
//! | `history`   | (`instance_id`, `idx`)     | `kind`, `payload`, `record`                              |
//! | `work`      | `id` bigint                | `kind`, `instance_id`, `payload`, `record`, `held_by`, `activity` (a limited activity's task, once a claim took or parked it) |
//! | `progress`  | `key` bytea                | `json`, `value`                                          |
//! | `workers`   | `id` bigint                | `expires_at` timestamptz                                 |
//! | `work_ids`  | (one row)                  | `next`: the first work id not yet reserved               |
//! | `activity_starts` | (none)               | `activity`, `started_at`: recent starts of rate-limited activities |
//!
//! - The record columns (`record`, `progress.value`) hold exactly what [`FjallStore`]
//!   stores: the postcard [`InstanceRecord`], [`Event`] or [`WorkItem`], and the raw
//!   progress bytes. Reads decode only them, so both stores return the same values.
//! - Beside them, columns for people and for SQL: `status` is the
//!   [`StatusKind::as_str`](crate::StatusKind::as_str) name, `kind` the event's variant name
//!   (`ActivityCompleted`) or the work item's (`message`, `activity`, `timer`), and the
//!   `json`-typed columns (`input`, `output`, `custom_status`, `payload`, `progress.json`)
//!   the user payload of the row, which durable-core writes as JSON, so `psql` shows it and
//!   `payload->>'field'` works. A payload that is not JSON (only tests write such) leaves its
//!   column NULL. `text` cannot hold NUL: a NUL in an orchestrator name shows as U+FFFD in
//!   `orchestrator` (the record keeps the name as it is).
//! - Ids and keys are `bytea`: instance ids and progress keys may hold any UTF-8, NUL
//!   included, which `text` refuses; bytea compares byte by byte, the order of
//!   [`Store::instances`]. `convert_from(id, 'UTF8')` shows one in `psql`.
//! - A [`WorkId`] (u64) is stored as the bigint with the same bits: ids below 2^63 (all the
//!   runtime allocates) read as themselves; [`Store::work_items`] sorts as u64.
//! - `instances` has the indexes `instances_by_status` (`status`, `created_ms`),
//!   `instances_by_orchestrator` (`hashtext(orchestrator)`, `created_ms`) and
//!   `instances_by_created` (`created_ms`), which [`Store::list_instances`],
//!   [`Store::count_by_status`] and [`Store::live_instances`] read (`query.rs`); the first
//!   and the last leave entities' rows out (`orchestrator` starting with
//!   `@`), as those listings do. Entities are listed by id, on the primary key
//!   ([`Store::instances_with_prefix`]). A database of an older version gets them when it
//!   is migrated.
//! - `instances.history_len` is the record's; the history append is fenced on the stored
//!   history itself (below).
//!
//! # Leases
//!
//! The lease contract ([`crate::lease`]) by the database's clock (`now()`), so workers'
//! clocks need not agree: `workers` holds each worker's lease ([`Store::join`] takes its id
//! from the sequence `worker_ids`, so no id is given twice), and `held_by` the worker that
//! holds an instance or a work item (NULL: none). A holding counts while its worker's row
//! is there and unexpired; the first claim after a lease expires deletes the row, which is
//! what takes the holdings over (`claim.rs`). The tables follow the peers that put a queue
//! table beside the instance table with a lock owner on the row (durabletask-mssql
//! `Instances.LockedBy` and `NewTasks`, duroxide-pg `worker_queue.lock_token`;
//! `shared/peers/PEERS.md` A1, A2), with the expiry on the worker rather than on each row,
//! so a renewal is one row's update. [`Store::reserve_work_ids`] adds to the one row of
//! `work_ids` (a sequence gives fixed steps, not a range of any size), never below the
//! highest stored id. A commit that leaves items unheld (and [`Store::leave`]) sends
//! `NOTIFY durable_work`, delivered when it commits; [`Store::wait_for_work`] waits on a
//! connection that listens (`listen.rs`).

//! # Commits
//!
//! One call to [`Store::commit`] is one transaction. Its commits are first folded into the
//! net change per key (the last write of an instance, work item or progress key wins; a
//! history removal drops the events appended before it), whose rows are then written by one
//! statement (`apply.rs`: each table's rows as arrays, `unnest`ed by data-modifying CTEs).
//! A call costs three round trips (`BEGIN`, the statement, `COMMIT`; a fourth when it
//! removes histories, on continue-as-new or purge) whether it holds one commit or a group
//! commit of hundreds. `BEGIN` stays a round trip of its own so that a call whose
//! connection was lost before `COMMIT` is known not to have been applied, and is retried;
//! one lost while `COMMIT` was in flight poisons the handle's writes (see [`PostgresStore`]).
//! A commit returns once the server acknowledges `COMMIT`: durable (the
//! [`Durability::Sync`](crate::Durability::Sync) of the other stores) when the server runs
//! with its defaults (`fsync`, `synchronous_commit = on`); a server configured otherwise (as
//! the throwaway `TestServer` is) may lose acknowledged commits when it crashes.
//!
//! The history append is fenced by its expected length, as durabletask-mssql and
//! duroxide-pg fence a turn on the history's primary key (PEERS.md A1, A2): an append must
//! start at the stored history's length (0 for a history with no events), or the call fails
//! with [`StoreError::HistoryConflict`] and writes nothing (the statement's writes are all
//! gated on the check; an append before a removal of its history in the same call is
//! checked by the removal's statement). The primary key (`instance_id`, `idx`) catches two
//! writers racing past the check.
//!
//! A commit under a lease is checked by the same statement (`apply.rs`), with the
//! semantics of `Leases::check`: refused whole, writing nothing, if its worker's lease is
//! not live ([`StoreError::LeaseExpired`]), or if it writes an instance another live worker
//! holds that has not finished, or removes a work item another live worker holds
//! ([`StoreError::Fenced`]). The worker's lease row is locked (`FOR KEY SHARE`) and the
//! checked rows `FOR UPDATE`, so a claim taking over its holdings (which deletes the lease
//! row) waits for the commit, or the commit finds the lease gone. Then the worker holds the
//! instances it wrote and the items it enqueued, except those its
//! [`CommitLease::unclaimed`](crate::CommitLease::unclaimed) names (and those of a commit
//! without a lease), which no one holds. The three round trips stay.

mod apply;
mod claim;
mod clean;
mod columns;
mod commit;
mod connect;
mod lease;
mod listen;
mod pool;
mod query;
mod read;
mod schema;
#[cfg(feature = "testing")]
pub(crate) mod test_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{KeyKind, StoreError};
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::{InstanceCursor, InstanceFilter, InstancePage, StatusCounts};
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};
use crate::store::Store;

use self::connect::{Conn, Target};
use self::listen::Listener;
use self::pool::Pool;

pub use self::schema::SCHEMA_VERSION;

#[cfg(doc)]
use crate::fjall_store::FjallStore;

/// A [`Store`] on a PostgreSQL server.
///
/// Commits go through one connection, one transaction per call; reads go through a few
/// others, so they do not wait behind a commit. Each connection is owned by a thread of
/// the store, so the store can be called from async code (the client library would panic
/// inside a tokio runtime); the caller blocks until the answer, as a read of a disk does. A
/// call whose connection was lost before anything was applied runs again on a new one. A
/// commit whose connection was lost while its `COMMIT` was in flight may or may not have
/// been applied: it fails with [`StoreError::Poisoned`], and so does every later commit
/// through this handle (reads go on), as [`FjallStore`] refuses writes after a write it
/// cannot vouch for; open the store again (restart the process) to write again.
/// Cheap to clone: clones share the connections, which are closed (and their threads
/// ended) by the time the drop of the last clone returns.
///
/// Several handles and processes may open one database: their workers share the work
/// under leases by the database's clock ([`crate::lease`]), each claiming work the others
/// do not hold, and a worker whose lease lapsed writes nothing more. From its first
/// [`Store::join`] or [`Store::wait_for_work`], a handle keeps one more connection, on a
/// thread of its own, listening for work left to claim.
///
/// It refuses what [`FjallStore`] refuses, and an instance id or progress key longer than
/// PostgreSQL's index holds (2,684 bytes, more if it compresses) with
/// [`StoreError::InvalidKey`].
///
/// # Examples
///
/// ```no_run
/// use durable_store::{PostgresStore, Store};
///
/// let store = PostgresStore::open("postgres://durable:secret@localhost/orders")?;
/// println!("{} instances", store.instances()?.len());
/// # Ok::<(), durable_store::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    target: Arc<Target>,
    pool: Pool,
    /// The thread listening for work, started by the first `join` or `wait_for_work`.
    listener: Mutex<Option<Arc<Listener>>>,
}

impl PostgresStore {
    /// Connects to the database of `url` and creates durable's schema in it if absent.
    ///
    /// `url` is a PostgreSQL URL (`postgres://user:password@host:port/database`) or a
    /// key-value connection string (`host=/run/postgresql user=durable dbname=orders`).
    /// Connections are in plain text (no TLS): use a unix socket or a trusted network.
    ///
    /// # Errors
    ///
    /// [`StoreError::Server`] if the server cannot be reached or refuses the user, the
    /// password, the database or a permission the schema needs (its
    /// [`ServerProblem`](crate::ServerProblem) says which), [`StoreError::OtherSchema`] if
    /// the database holds durable's schema in a newer version than [`SCHEMA_VERSION`],
    /// [`StoreError::Io`] if `url` does not parse or another statement fails.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, schema::create_or_check)
    }

    /// Connects to the database of `url`, which must hold durable's schema in the current
    /// version ([`SCHEMA_VERSION`]): it creates and migrates nothing. For tools that read a
    /// store (the `durable` CLI), where a mistyped database must not gain a schema.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSchema`] if the database holds no durable schema,
    /// [`StoreError::OtherSchema`] if it holds another version (an older one is migrated
    /// by [`open`](Self::open)); otherwise as [`open`](Self::open).
    pub fn open_existing(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, schema::check_existing)
    }

    /// Connects, readies the schema with `prepare` on the first connection, and starts the
    /// pool.
    fn open_with(
        url: &str,
        prepare: fn(&mut Conn, &Target) -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        let target = Arc::new(Target::parse(url)?);
        // On a thread of its own, as every call: the caller may be async.
        let writer = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut conn = target.connect()?;
                    prepare(&mut conn, &target)?;
                    Ok(conn)
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        let pool = Pool::start(target.clone(), writer)?;
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                pool,
                listener: Mutex::new(None),
            }),
        })
    }

    /// The server and database, as `user@host:port/database` (never the password).
    pub fn server(&self) -> &str {
        self.inner.target.name()
    }

    /// The listening thread, started if it is not.
    fn listener(&self) -> Result<Arc<Listener>, StoreError> {
        let mut listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(listener) = listener.as_ref() {
            return Ok(listener.clone());
        }
        let started = Arc::new(Listener::start(self.inner.target.clone())?);
        *listener = Some(started.clone());
        Ok(started)
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.server())
            .finish_non_exhaustive()
    }
}

impl Store for PostgresStore {
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        if commits
            .iter()
            .all(|commit| commit.is_empty() && commit.lease.is_none())
        {
            return Ok(());
        }
        crate::keys::check(commits)?;
        // A copy for the commit thread (the client library cannot run on the caller's).
        let commits = commits.to_vec();
        self.inner.pool.write(move |slot| {
            let plan = commit::Plan::of(&commits)?;
            slot.run(|conn, target| plan.write(conn, target))
        })
    }

    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        if !crate::keys::is_storable(KeyKind::InstanceId, id) {
            return Ok(None);
        }
        let id = id.to_owned();
        self.inner
            .pool
            .read(move |slot| slot.run(|conn, target| Ok(read::instance(conn, target, &id)?)))
    }

    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.inner
            .pool
            .read(|slot| slot.run(|conn, target| Ok(read::instances(conn, target)?)))
    }

    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        let filter = filter.clone();
        let after = after.cloned();
        self.inner.pool.read(move |slot| {
            slot.run(|conn, target| Ok(query::list(conn, target, &filter, after.as_ref(), limit)?))
        })
    }

    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        self.inner.pool.read(move |slot| {
            slot.run(|conn, target| {
                Ok(query::with_prefix(
                    conn,
                    target,
                    &prefix,
                    after.as_deref(),
                    limit,
                )?)
            })
        })
    }

    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.inner
            .pool
            .write(move |slot| slot.run(|conn, target| clean::remove_idle(conn, target, &ids)))
    }

    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        self.inner
            .pool
            .read(|slot| slot.run(|conn, target| Ok(query::counts(conn, target)?)))
    }

    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.inner
            .pool
            .read(|slot| slot.run(|conn, target| Ok(query::live(conn, target)?)))
    }

    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        if !crate::keys::is_storable(KeyKind::InstanceId, id) {
            return Ok(Vec::new());
        }
        let id = id.to_owned();
        self.inner
            .pool
            .read(move |slot| slot.run(|conn, target| Ok(read::history(conn, target, &id)?)))
    }

    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        self.inner
            .pool
            .read(|slot| slot.run(|conn, target| Ok(read::work_items(conn, target)?)))
    }

    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !crate::keys::is_storable(KeyKind::ProgressKey, key) {
            return Ok(None);
        }
        let key = key.to_owned();
        self.inner
            .pool
            .read(move |slot| slot.run(|conn, target| Ok(read::progress(conn, target, &key)?)))
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn commit_concurrency(&self) -> usize {
        pool::WRITERS
    }

    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        let worker = self
            .inner
            .pool
            .read(move |slot| slot.run(|conn, target| Ok(lease::join(conn, target, lease)?)))?;
        // Listening from now on, so that the first wait sees what is notified before it;
        // a wait starts the listener again if it cannot start now.
        let _ = self.listener();
        Ok(worker)
    }

    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        self.inner.pool.read(move |slot| {
            slot.run(|conn, target| Ok(lease::renew(conn, target, worker, lease)?))
        })
    }

    fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        self.inner
            .pool
            .read(move |slot| slot.run(|conn, target| Ok(lease::leave(conn, target, worker)?)))
    }

    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        let filter = filter.clone();
        self.inner.pool.read(move |slot| {
            let mut unknown = None;
            slot.run(|conn, target| claim::claim(conn, target, worker, &filter, &mut unknown))
        })
    }

    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        self.inner
            .pool
            .read(move |slot| slot.run(|conn, target| Ok(lease::reserve(conn, target, count)?)))
    }

    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        self.listener()?.wait(timeout);
        Ok(())
    }
}
