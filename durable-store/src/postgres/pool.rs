//! The store's connections, each owned by a thread of its own.
//!
//! The `postgres` client blocks on a tokio runtime of its own, which panics when called on
//! a thread that already runs an async runtime: the engine reads the store from its tokio
//! tasks. So every call is handed to a connection thread and its caller blocks on the
//! answer (as a read of fjall blocks on the disk): one thread for commits, and a few for
//! reads, so reads do not wait behind a commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::connect::{Conn, Target};
use crate::error::{ServerProblem, StoreError};

/// How many threads (and so connections, at most) serve reads.
const READERS: usize = 4;

/// How many threads (and so connections) serve commits: while the server applies and
/// flushes one group commit, the next is encoded and sent on another connection. The
/// `chain` bench went from 5,500 to 7,500 orchestrations/s with two (BENCHMARKS.md).
pub(super) const WRITERS: usize = 2;

/// A call handed to a connection thread.
type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// A thread's connection, opened on first use and again after it broke.
pub(super) struct Slot {
    target: Arc<Target>,
    conn: Option<Conn>,
    /// Set once a commit's connection was lost while its `COMMIT` was in flight: whether it
    /// was applied no one can tell, so no later call runs (as `FjallStore` refuses writes
    /// after a write it cannot vouch for). Shared by the commit threads.
    poisoned: Arc<Mutex<Option<StoreError>>>,
}

impl Slot {
    /// The open connection, connecting if there is none, and the database it is to.
    pub(super) fn conn(&mut self) -> Result<(&mut Conn, &Target), StoreError> {
        if self.conn.as_ref().is_none_or(Conn::is_closed) {
            self.conn = Some(self.target.connect()?);
        }
        Ok((self.conn.as_mut().expect("connected above"), &self.target))
    }

    /// Runs `job` on the connection, and once more on a new one if the first was lost (the
    /// server restarted or ended the session, or the network cut it) and `job` says none
    /// of it can have been applied. A call lost when it may have been applied poisons the
    /// slot: it and every later call fail with [`StoreError::Poisoned`].
    pub(super) fn run<T>(
        &mut self,
        mut job: impl FnMut(&mut Conn, &Target) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut retried = false;
        loop {
            if let Some(poisoned) = lock(&self.poisoned).as_ref() {
                return Err(poisoned.clone());
            }
            let (conn, target) = self.conn()?;
            let failure = match job(conn, target) {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let lost = conn.is_closed()
                || matches!(
                    failure.error,
                    StoreError::Server {
                        problem: ServerProblem::Unreachable,
                        ..
                    }
                );
            if lost {
                self.conn = None;
            }
            if lost && !failure.unapplied {
                let poisoned = StoreError::Poisoned {
                    path: None,
                    detail: format!(
                        "the connection of a commit to {} was lost while its COMMIT was in \
                         flight, so whether it was applied is unknown: {}",
                        self.target.name(),
                        failure.error
                    ),
                    source: Some(Arc::new(failure.error)),
                };
                lock(&self.poisoned).get_or_insert(poisoned.clone());
                return Err(poisoned);
            }
            if retried || !lost || !failure.unapplied {
                return Err(failure.error);
            }
            retried = true;
        }
    }
}

/// A failed call on a connection, and whether it may be run again.
pub(super) struct Failure {
    pub(super) error: StoreError,
    /// Whether nothing of the call can have been applied: a read, or a commit that failed
    /// before its `COMMIT` was sent (the server rolls back a transaction whose connection
    /// closes).
    pub(super) unapplied: bool,
}

impl From<StoreError> for Failure {
    /// A read's failure: reading again changes nothing.
    fn from(error: StoreError) -> Self {
        Failure {
            error,
            unapplied: true,
        }
    }
}

/// The connection threads of one store; they end when it drops.
pub(super) struct Pool {
    writer: Option<Sender<Job>>,
    readers: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts the threads; `writer` is the open connection of the first commit thread.
    pub(super) fn start(target: Arc<Target>, writer: Conn) -> Result<Self, StoreError> {
        let (writer_jobs, jobs) = channel::<Job>();
        let (readers, reads) = channel::<Job>();
        // Built first, so that a thread that fails to start drops (and joins) the others.
        let mut pool = Self {
            writer: Some(writer_jobs),
            readers: Some(readers),
            threads: Vec::with_capacity(WRITERS + READERS),
        };
        let jobs = Arc::new(Mutex::new(jobs));
        let poisoned = Arc::new(Mutex::new(None));
        let mut writer = Some(writer);
        for n in 0..WRITERS {
            let slot = Slot {
                target: target.clone(),
                conn: writer.take(),
                poisoned: poisoned.clone(),
            };
            pool.threads.push(spawn(
                &format!("durable-pg-commit-{n}"),
                slot,
                jobs.clone(),
            )?);
        }
        let reads = Arc::new(Mutex::new(reads));
        for n in 0..READERS {
            let slot = Slot {
                target: target.clone(),
                conn: None,
                poisoned: Arc::default(),
            };
            pool.threads
                .push(spawn(&format!("durable-pg-read-{n}"), slot, reads.clone())?);
        }
        Ok(pool)
    }

    /// Runs `job` on a commit thread's connection and waits for its answer.
    pub(super) fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Slot) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        call(self.writer.as_ref().expect("set until dropped"), job)
    }

    /// Runs `job` on a read thread's connection and waits for its answer.
    pub(super) fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Slot) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        call(self.readers.as_ref().expect("set until dropped"), job)
    }
}

impl Drop for Pool {
    /// Ends the threads and waits until they have closed their connections, so a dropped
    /// store holds no session on the server (a `DROP DATABASE` right after succeeds).
    fn drop(&mut self) {
        self.writer = None;
        self.readers = None;
        for thread in self.threads.drain(..) {
            // The thread that drops the last handle is never one of the pool's: a call
            // borrows the store, and jobs hold no handle.
            let _ = thread.join();
        }
    }
}

/// Runs `job` on [`Slot::conn`]'s connection on the thread `jobs` feeds, and waits.
fn call<T: Send + 'static>(
    jobs: &Sender<Job>,
    job: impl FnOnce(&mut Slot) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (answer, answered) = sync_channel(1);
    jobs.send(Box::new(move |slot| {
        let _ = answer.send(job(slot));
    }))
    .map_err(|_| stopped())?;
    answered.recv().map_err(|_| stopped())?
}

fn stopped() -> StoreError {
    StoreError::Io {
        detail: "the store's connection thread stopped (a call panicked); the call may or \
                 may not have been applied"
            .to_owned(),
        source: None,
    }
}

/// Starts a connection thread serving `jobs` until every sender is dropped.
fn spawn(
    name: &str,
    mut slot: Slot,
    jobs: Arc<Mutex<Receiver<Job>>>,
) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            loop {
                let job = {
                    let jobs = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                };
                // A call that panicked leaves its connection in an unknown state: drop it.
                if catch_unwind(AssertUnwindSafe(|| job(&mut slot))).is_err() {
                    slot.conn = None;
                }
            }
        })
        .map_err(|e| StoreError::Io {
            detail: format!("cannot start the store's connection thread: {e}"),
            source: crate::error::cause(e),
        })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
