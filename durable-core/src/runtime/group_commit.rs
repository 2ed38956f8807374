//! Group commit: commits that arrive while the store is writing are gathered and written
//! together as one atomic batch with one fsync.
//!
//! One thread owns the writes (or a few, on a store that serves several at once: see
//! [`Store::commit_concurrency`]). It takes every commit queued since its last write and
//! hands them to [`Store::commit`] at once; each caller is told once the batch holding its
//! commit is durable. Under load, one fsync acknowledges many turns.
//!
//! A store that refuses every write from now on ([`StoreError::Poisoned`], after a failed
//! fsync) halts the runtime: the thread keeps the error, and the runtime stops taking
//! work and tells whoever waits, instead of retrying what cannot succeed. A commit
//! refused because the worker's lease lapsed ([`StoreError::LeaseExpired`]) does not:
//! the thread reports the lapse, and the claim loop joins the store again
//! (`super::lease`).

use std::collections::VecDeque;
use std::sync::Condvar;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use durable_store::{Commit, Store, StoreError, WorkerId};
use tokio::sync::{Notify, oneshot};

use crate::error::Error;
use crate::telemetry::metrics;

/// The most commits written in one batch.
const MAX_BATCH: usize = 1024;

/// Tells the caller how its commit went, and hands the commit back: the caller reuses
/// its records, and frees it, off the commit thread.
type Reply = oneshot::Sender<(Result<(), StoreError>, Commit)>;

/// Counters of the commit thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Commits acknowledged (turns, activity results, starts, progress saves).
    pub commits: u64,
    /// Store writes that carried them (one fsync each when turns are durable).
    pub writes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    /// Set once the store refuses every further write.
    halted: OnceLock<StoreError>,
    /// Told when `halted` is set.
    halt: Notify,
    /// The last worker whose lease the store reported lapsed (0 for none).
    lapsed: AtomicU64,
    /// Told (one permit, for the claim loop) when a lapse is reported.
    lapse: Arc<Notify>,
}

/// The commits waiting for a commit thread.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<Queued>,
    /// Told, one thread at a time, when a commit is queued; all of them at the close.
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Queued {
    commits: VecDeque<(Commit, Reply)>,
    /// Set once the runtime stops: the threads write what is queued, then end.
    closed: bool,
}

/// The sending side of the commit threads. Dropping it stops them once they have written
/// what is queued.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    queue: Arc<Queue>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl GroupCommit {
    /// Starts the commit threads: as many as the store serves commits at once
    /// ([`Store::commit_concurrency`]), each taking what is queued when it is free.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let queue = Arc::new(Queue::default());
        let counters = Arc::new(Counters::default());
        let threads = (0..store.commit_concurrency().max(1))
            .map(|n| {
                let (store, queue, counters) = (store.clone(), queue.clone(), counters.clone());
                std::thread::Builder::new()
                    .name(format!("durable-commit-{n}"))
                    .spawn(move || write_loop(&*store, &queue, &counters))
                    .expect("spawn a durable-commit thread")
            })
            .collect();
        Self {
            queue,
            threads: Mutex::new(threads),
            counters,
        }
    }

    /// Writes what is queued, then stops the thread; later commits fail with `ShutDown`.
    pub(crate) async fn stop(&self) {
        self.queue.close();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Queues `commit` for the next batch at once; the returned future resolves once it
    /// is durable, with the commit handed back. A turn gives up its slot between queueing
    /// and the fsync, so the turns that wait on one fsync are not capped by how many may
    /// compute at once.
    pub(crate) fn submit(
        &self,
        commit: Commit,
    ) -> impl Future<Output = (Result<(), Error>, Commit)> + Send + use<> {
        let (reply, done) = oneshot::channel();
        let refused = self.queue.push(commit, reply);
        async move {
            if let Some(commit) = refused {
                return (Err(Error::ShutDown), commit);
            }
            match done.await {
                Ok((result, commit)) => (result.map_err(Error::from), commit),
                Err(_) => (Err(Error::ShutDown), Commit::default()),
            }
        }
    }

    /// Reports that the store found the lease of `worker` expired (refusing a commit, a
    /// renewal or a claim of it), and tells the claim loop.
    pub(crate) fn report_lapse(&self, worker: WorkerId) {
        report_lapse(&self.counters, worker);
    }

    /// The last worker whose lease was reported lapsed; 0 for none.
    pub(crate) fn lapsed(&self) -> WorkerId {
        self.counters.lapsed.load(Ordering::SeqCst)
    }

    /// Told when a lapse is reported; a report while no one waits is kept for the next
    /// wait (one waiter: the claim loop).
    pub(crate) fn lapse_signal(&self) -> Arc<Notify> {
        self.counters.lapse.clone()
    }

    /// The error the store refuses every write with, once it does.
    pub(crate) fn halted(&self) -> Option<&StoreError> {
        self.counters.halted.get()
    }

    /// Resolves when the store starts refusing every write. Registered when called: check
    /// [`halted`](Self::halted) after calling it, not before, to miss nothing.
    pub(crate) fn on_halt(&self) -> impl Future<Output = ()> + '_ {
        self.counters.halt.notified()
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }
}

/// A commit thread: takes everything queued (up to [`MAX_BATCH`]) once it is free, writes
/// it, and tells each caller. With several threads, one gathers the next batch while the
/// others write theirs.
fn write_loop(store: &dyn Store, queue: &Queue, counters: &Counters) {
    let mut commits = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while queue.take(&mut commits, &mut replies) {
        let results = write_apart(store, &commits, counters);
        for ((commit, reply), result) in commits.drain(..).zip(replies.drain(..)).zip(results) {
            // The caller may have gone away (shutdown); the write stands regardless.
            let _ = reply.send((result, commit));
        }
    }
}

impl Queue {
    /// Queues `commit` for the next free thread; hands it back if the threads stopped.
    fn push(&self, commit: Commit, reply: Reply) -> Option<Commit> {
        let mut state = lock(&self.state);
        if state.closed {
            return Some(commit);
        }
        state.commits.push_back((commit, reply));
        drop(state);
        // One thread: the others sleep on, and a thread that is writing takes the commit
        // with its next batch if none is free.
        self.ready.notify_one();
        None
    }

    /// Waits for commits and moves up to [`MAX_BATCH`] of them into `commits` and
    /// `replies`; false once the queue is closed and empty.
    fn take(&self, commits: &mut Vec<Commit>, replies: &mut Vec<Reply>) -> bool {
        let mut state = lock(&self.state);
        while state.commits.is_empty() {
            if state.closed {
                return false;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let n = state.commits.len().min(MAX_BATCH);
        for (commit, reply) in state.commits.drain(..n) {
            commits.push(commit);
            replies.push(reply);
        }
        // More than a batch left: another thread may take the rest at once.
        let more = !state.commits.is_empty();
        drop(state);
        if more {
            self.ready.notify_one();
        }
        true
    }

    /// Stops taking commits; the threads write what is queued, then end.
    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }
}

/// Writes `commits` as one batch; if the store refuses it for what one of them holds (a
/// key it cannot store, an instance that changed, a history another wrote), that one must
/// not fail the others: the batch is halved, in order, and each half written the same way
/// until the refused commits stand alone. One refusal among `n` commits costs about
/// `2 log2 n` writes, not `n`. Returns each commit's result, in order.
fn write_apart(
    store: &dyn Store,
    commits: &[Commit],
    counters: &Counters,
) -> Vec<Result<(), StoreError>> {
    let result = write(store, commits, counters);
    if let Err(StoreError::LeaseExpired { worker }) = &result
        && commits
            .iter()
            .any(|commit| lease_of(commit) != Some(*worker))
    {
        return lapsed_apart(store, commits, *worker, counters);
    }
    // A poisoned store and a lapsed lease refuse every commit alike: nothing to set apart.
    let apart = commits.len() > 1
        && matches!(&result, Err(e) if e.is_permanent()
            && !matches!(e, StoreError::Poisoned { .. } | StoreError::LeaseExpired { .. }));
    if !apart {
        return vec![result; commits.len()];
    }
    let (first, second) = commits.split_at(commits.len() / 2);
    let mut results = write_apart(store, first, counters);
    results.extend(write_apart(store, second, counters));
    results
}

/// The worker whose lease `commit` was made under, if any.
fn lease_of(commit: &Commit) -> Option<WorkerId> {
    commit.lease.as_ref().map(|lease| lease.worker)
}

/// Sets apart the commits of a batch the store refused because the lease of `worker`
/// lapsed: once the worker has joined again, a turn computed under the old lease (or a
/// commit made while it joined) may share a batch with commits under the new one, and
/// those must not be refused with it. The commits under `worker`'s lease are refused; the
/// others are written without them, in order. Returns each commit's result, in order.
fn lapsed_apart(
    store: &dyn Store,
    commits: &[Commit],
    worker: WorkerId,
    counters: &Counters,
) -> Vec<Result<(), StoreError>> {
    // Rare (a lapse), so the others are copied rather than the batch reordered.
    let others: Vec<Commit> = (commits.iter())
        .filter(|commit| lease_of(commit) != Some(worker))
        .cloned()
        .collect();
    let mut written = write_apart(store, &others, counters).into_iter();
    commits
        .iter()
        .map(|commit| {
            if lease_of(commit) == Some(worker) {
                Err(StoreError::LeaseExpired { worker })
            } else {
                written.next().expect("a result for every other commit")
            }
        })
        .collect()
}

/// Writes `commits` as one batch and counts it; a store that refuses every write from now
/// on halts the runtime, and a lease found lapsed is reported.
fn write(store: &dyn Store, commits: &[Commit], counters: &Counters) -> Result<(), StoreError> {
    let result = store.commit(commits);
    match &result {
        Ok(()) => {
            counters.writes.fetch_add(1, Ordering::Relaxed);
            counters
                .commits
                .fetch_add(commits.len() as u64, Ordering::Relaxed);
            metrics::commit_batch(commits.len());
        }
        Err(StoreError::LeaseExpired { worker }) => {
            tracing::debug!(
                worker,
                commits = commits.len(),
                "commit refused: the lease lapsed"
            );
            report_lapse(counters, *worker);
        }
        Err(e) => {
            tracing::error!(error = %e, commits = commits.len(), "store commit failed");
            if let StoreError::Poisoned { .. } = e
                && counters.halted.set(e.clone()).is_ok()
            {
                tracing::error!(
                    "the store refuses every write: the runtime stops; restart the process to resume"
                );
                counters.halt.notify_waiters();
            }
        }
    }
    result
}

fn report_lapse(counters: &Counters, worker: WorkerId) {
    // Worker 0 is no lease: a commit made while the worker joins again.
    if worker != 0 && counters.lapsed.swap(worker, Ordering::SeqCst) != worker {
        counters.lapse.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for GroupCommit {
    /// Lets the thread write what is queued and waits for it, so the store is closed
    /// when the runtime's last handle is gone.
    fn drop(&mut self) {
        self.queue.close();
        for thread in std::mem::take(&mut *lock(&self.threads)) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
