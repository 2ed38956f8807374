//! How [`PostgresStore`](super::PostgresStore) writes a call to `commit`: its commits
//! folded into the net change per key, written in one transaction by one statement
//! (`apply.rs`), after the removal of whole histories if the call removes any.

use std::collections::{BTreeMap, HashMap, HashSet};

use postgres::error::SqlState;

use super::apply::{APPLY, REMOVE_HISTORIES, Rows};
use super::connect::{Conn, Prepared, Target};
use super::pool::Failure;
use crate::error::{KeyKind, StoreError, cause};
use crate::keys;
use crate::lease::{WorkerId, written_instances};
use crate::record::{Commit, Event, Incarnation, InstanceRecord, WorkId, WorkItem};

/// The longest row a btree index of PostgreSQL holds: a third of an 8 KiB page, less the
/// page's headers.
const MAX_INDEX_ROW: usize = 2704;

/// The longest key every index of the schema holds as it is: the row less its header (8
/// bytes), the key's length (4) and, in `history`'s, the event index (8), the key padded
/// to 8 bytes before it. A longer key is refused unless it compresses below it.
const MAX_INDEXED_KEY: usize = MAX_INDEX_ROW - 20;

/// Locks the instances of `$1` and reads their records, for their expected incarnations.
const LOCK_EXPECTED: &str =
    "SELECT id, record FROM durable.instances WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// What one history does within a call.
#[derive(Default)]
pub(super) struct HistoryChange<'a> {
    /// Whether the call removes the stored history.
    removed: bool,
    /// Where the history ends after the call's changes so far; `None` while that depends on
    /// the stored history.
    end: Option<u64>,
    /// The events to insert, as (index, event).
    pub(super) events: Vec<(u32, &'a Event)>,
}

/// The net change of a call to `commit`.
pub(super) struct Plan<'a> {
    /// Last write per instance id: `Some` writes the record, `None` removes it.
    pub(super) instances: BTreeMap<&'a str, Option<&'a InstanceRecord>>,
    /// Per history, in first-touched order.
    pub(super) histories: Vec<(&'a str, HistoryChange<'a>)>,
    /// Appends whose start is checked against the stored history, as (id, first).
    pub(super) fences: Vec<(&'a str, u32)>,
    /// Last write per work id: the item and the worker that holds it (`None`: unheld).
    pub(super) work: BTreeMap<WorkId, Option<(&'a WorkItem, Option<WorkerId>)>>,
    /// Last write per progress key.
    pub(super) progress: BTreeMap<&'a str, Option<&'a [u8]>>,
    /// What the store checks of the commits under a lease.
    pub(super) lease: LeasePlan<'a>,
    /// The [`Commit::expected`] left to check against the stored instances (those no
    /// earlier commit of the call decided), by id.
    pub(super) expected: BTreeMap<&'a str, Option<Incarnation>>,
}

/// The lease checks of a call, and the holders its commits leave; see `lease/local.rs`
/// (`Leases::check`, `Leases::written`), whose semantics these follow.
#[derive(Default)]
pub(super) struct LeasePlan<'a> {
    /// (commit index, worker) of each commit under a lease: the lease must be live.
    pub(super) workers: Vec<(i32, WorkerId)>,
    /// The instances those commits write, in order, as (commit index, rank in the commit,
    /// id, worker, the worker of an earlier commit of the call that wrote it): another
    /// live holder refuses the commit unless the instance finished or is absent.
    pub(super) instances: Vec<(i32, i32, &'a str, WorkerId, Option<WorkerId>)>,
    /// The work items those commits remove, as (commit index, rank, id, worker): another
    /// live holder refuses the commit.
    pub(super) dequeued: Vec<(i32, i32, WorkId, WorkerId)>,
    /// The worker each written instance is held by after the call.
    pub(super) holders: BTreeMap<&'a str, WorkerId>,
    /// Whether the call leaves items no worker holds: others are told (`NOTIFY`).
    pub(super) left: bool,
    /// The instances the call's commits release: unheld after it, whoever held them.
    pub(super) released: Vec<&'a str>,
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
            lease: LeasePlan::default(),
            expected: BTreeMap::new(),
        };
        // The incarnation of each instance after the commits before the current one.
        let mut written: HashMap<&str, Option<Incarnation>> = HashMap::new();
        for commit in commits {
            for (id, expected) in &commit.expected {
                match written.get(id.as_str()) {
                    Some(found) if found != expected => {
                        return Err(StoreError::InstanceChanged {
                            instance: id.clone(),
                            expected: *expected,
                            found: *found,
                        });
                    }
                    Some(_) => {}
                    None => {
                        plan.expected.entry(id).or_insert(*expected);
                    }
                }
            }
            for id in &commit.instances_removed {
                written.insert(id, None);
            }
            for (id, record) in &commit.instances {
                written.insert(id, Some(record.incarnation));
            }
        }
        // The instances earlier commits of the call write under a lease, by worker.
        let mut taken: HashMap<&str, WorkerId> = HashMap::new();
        for (index, commit) in commits.iter().enumerate() {
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            plan.lease.add(index, commit, &mut taken);
        }
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
            let unclaimed: HashSet<WorkId> = commit
                .lease
                .iter()
                .flat_map(|lease| lease.unclaimed.iter().copied())
                .collect();
            for (id, item) in &commit.enqueued {
                let holder = commit
                    .lease
                    .as_ref()
                    .filter(|_| !unclaimed.contains(id))
                    .map(|lease| lease.worker);
                plan.work.insert(*id, Some((item, holder)));
            }
            for (key, value) in &commit.progress {
                plan.progress.insert(key, value.as_deref());
            }
        }
        Ok(plan)
    }

    /// Whether the call removes the history of `id`.
    pub(super) fn removes(&self, id: &str) -> bool {
        self.histories
            .iter()
            .any(|(history, change)| *history == id && change.removed)
    }

    /// Writes the plan in one transaction on `conn`.
    pub(super) fn write(&self, conn: &mut Conn, target: &Target) -> Result<(), Failure> {
        let error = |doing: &'static str| move |e| self.error(target, doing, e);
        // Encoded before the transaction begins: a record that does not encode costs no
        // round trip.
        let rows = Rows::of(self).map_err(error("encoding records"))?;
        let mut tx = conn
            .transaction()
            .map_err(|e| error("starting a commit")(e.into()))?;
        self.check_incarnations(&mut tx)
            .map_err(|e| Failure::from(error("checking instances")(e)))?;
        let removed: Vec<&[u8]> = self
            .histories
            .iter()
            .filter(|(_, change)| change.removed)
            .map(|(id, _)| id.as_bytes())
            .collect();
        if !removed.is_empty() {
            // The appends before a removal, checked before it.
            let (ids, firsts): (Vec<&[u8]>, Vec<i64>) = self
                .fences
                .iter()
                .filter(|(id, _)| self.removes(id))
                .map(|(id, first)| (id.as_bytes(), i64::from(*first)))
                .unzip();
            let refused = tx
                .query(REMOVE_HISTORIES, &[&removed, &ids, &firsts])
                .map_err(|e| error("removing histories")(e.into()))?;
            if let Some(refusal) = refused.iter().find_map(refusal) {
                return Err(refusal.into());
            }
        }
        let refused = tx
            .query(APPLY, &rows.params())
            .map_err(|e| error("writing a commit")(e.into()))?;
        if let Some(refusal) = refused.iter().find_map(refusal) {
            // Dropping `tx` rolls back the removals.
            return Err(refusal.into());
        }
        // Whether a COMMIT whose answer was lost was applied, no one can tell.
        tx.commit().map_err(|e| Failure {
            error: error("committing")(e.into()),
            unapplied: false,
        })
    }

    /// Checks the expected incarnations ([`Commit::expected`]) of instances that exist, or
    /// should: their rows are locked until the transaction ends. An instance expected
    /// absent is checked by [`APPLY`] as it inserts it (a row another transaction inserts
    /// meanwhile is not visible here, and its insert conflicts there).
    ///
    /// The rows the call writes under a lease, which [`APPLY`] locks too, are locked here
    /// with them, in the same statement and id order: a call that locked the rows it
    /// expects and then waited for one it writes could close a cycle with another call
    /// doing the same the other way round (senders to entities expect their records,
    /// `Store::remove_idle_entities`), which PostgreSQL breaks by aborting one of them.
    fn check_incarnations(&self, tx: &mut Prepared<'_>) -> Result<(), WriteError> {
        let mut ids: Vec<&[u8]> = self
            .expected
            .iter()
            .filter(|(_, expected)| expected.is_some())
            .map(|(id, _)| id.as_bytes())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.extend((self.lease.instances.iter()).map(|(_, _, id, _, _)| id.as_bytes()));
        let rows = tx.query(LOCK_EXPECTED, &[&ids])?;
        let mut stored: HashMap<Vec<u8>, Incarnation> = HashMap::new();
        for row in rows {
            let id: Vec<u8> = row.get(0);
            let bytes: Vec<u8> = row.get(1);
            let record: InstanceRecord = crate::record::decode(&bytes, || {
                format!("instance record `{}`", String::from_utf8_lossy(&id))
            })
            .map_err(WriteError::Encode)?;
            stored.insert(id, record.incarnation);
        }
        for (id, expected) in &self.expected {
            let Some(expected) = expected else { continue };
            let found = stored.get(id.as_bytes()).copied();
            if found != Some(*expected) {
                return Err(WriteError::Encode(StoreError::InstanceChanged {
                    instance: (*id).to_owned(),
                    expected: Some(*expected),
                    found,
                }));
            }
        }
        Ok(())
    }

    /// What a failed write means: an oversized key, a [`StoreError::HistoryConflict`]
    /// when two writers met on a history's primary key, or what [`Target::error`] says.
    fn error(&self, target: &Target, doing: &'static str, e: WriteError) -> StoreError {
        match e {
            WriteError::Sql(e) if e.code() == Some(&SqlState::PROGRAM_LIMIT_EXCEEDED) => self
                .oversized_key()
                .unwrap_or_else(|| write_error(target, doing, e)),
            e => write_error(target, doing, e),
        }
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
                "it is {} bytes long, and PostgreSQL's index holds a row of at most \
                 {MAX_INDEX_ROW} bytes: a key of {MAX_INDEXED_KEY} bytes, or a longer one \
                 that compresses to that; use a shorter one",
                key.len()
            ),
        ))
    }
}

/// The error a row of [`APPLY`]'s answer stands for; `None` for its `notified` row.
fn refusal(row: &postgres::Row) -> Option<StoreError> {
    let kind: &str = row.get(0);
    let id: Option<Vec<u8>> = row.get(1);
    let (a, b, c): (Option<i64>, Option<i64>, Option<i64>) = (row.get(2), row.get(3), row.get(4));
    let (a, b, c) = (a.unwrap_or(0), b.unwrap_or(0), c.unwrap_or(0));
    let id = String::from_utf8_lossy(id.as_deref().unwrap_or_default()).into_owned();
    // Worker ids are positive bigints; work ids are stored by their bits.
    Some(match kind {
        "history" => StoreError::HistoryConflict {
            instance: id,
            first: u32::try_from(a).unwrap_or(u32::MAX),
            stored: u32::try_from(b).unwrap_or(u32::MAX),
        },
        "expired" => StoreError::LeaseExpired {
            worker: a as WorkerId,
        },
        "instance" => StoreError::Fenced {
            worker: a as WorkerId,
            what: format!("instance `{id}`"),
            holder: b as WorkerId,
        },
        "work" => StoreError::Fenced {
            worker: a as WorkerId,
            what: format!("work item {}", c as WorkId),
            holder: b as WorkerId,
        },
        // An instance the call expected absent and found there as it inserted it.
        "exists" => StoreError::InstanceChanged {
            instance: id,
            expected: None,
            found: None,
        },
        _ => return None,
    })
}

impl<'a> LeasePlan<'a> {
    /// Adds commit `index` of the call; `taken` holds, by instance, the worker of the last
    /// commit under a lease before it that wrote the instance.
    fn add(&mut self, index: i32, commit: &'a Commit, taken: &mut HashMap<&'a str, WorkerId>) {
        for id in &commit.instances_removed {
            self.holders.remove(id.as_str());
        }
        let Some(lease) = &commit.lease else {
            self.left |= !commit.enqueued.is_empty();
            return;
        };
        let worker = lease.worker;
        self.workers.push((index, worker));
        let mut rank = 0;
        for id in written_instances(commit) {
            rank += 1;
            let prior = taken.insert(id, worker);
            self.instances.push((index, rank, id, worker, prior));
            if lease.released.iter().any(|released| released == id) {
                // Left unheld, for a claim.
                self.holders.remove(id);
                self.released.push(id);
            } else {
                self.holders.insert(id, worker);
            }
        }
        for id in &commit.dequeued {
            rank += 1;
            self.dequeued.push((index, rank, *id, worker));
        }
        self.left |= commit
            .enqueued
            .iter()
            .any(|(id, _)| lease.unclaimed.contains(id));
    }
}

/// The bigint that stores a [`WorkId`]: the same 64 bits.
pub(super) fn work_key(id: WorkId) -> i64 {
    id as i64
}

/// The bigint that stores a [`WorkerId`] (ids come from a bigint sequence).
pub(super) fn worker_key(id: WorkerId) -> i64 {
    id as i64
}

/// A failed write: a record that does not encode, or the statement's error.
pub(super) enum WriteError {
    Encode(StoreError),
    Sql(postgres::Error),
}

impl From<postgres::Error> for WriteError {
    fn from(e: postgres::Error) -> Self {
        WriteError::Sql(e)
    }
}

pub(super) fn encode<T: serde::Serialize>(
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
