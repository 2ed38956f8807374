//! Group commit's batching, halving and concurrent writers, on memory stores that hold
//! or count their writes.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use durable_store::{CommitLease, Layered, MemoryStore, StoreLayer};

use super::*;

/// A memory store whose first commit waits until the test lets it go, so the commits
/// submitted meanwhile are written together as one batch.
#[derive(Default)]
struct HeldFirst {
    inner: MemoryStore,
    entered: AtomicBool,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl StoreLayer for HeldFirst {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        if !self.entered.swap(true, Ordering::SeqCst)
            && let Some(release) = lock(&self.release).take()
        {
            let _ = release.recv();
        }
        self.inner.commit(commits)
    }
}

fn put(key: &str) -> Commit {
    Commit {
        progress: vec![(key.to_owned(), Some(vec![1]))],
        ..Commit::default()
    }
}

#[tokio::test]
async fn a_commit_the_store_refuses_fails_alone_not_the_batch_it_was_in() {
    let (release, held) = mpsc::channel();
    let store = Arc::new(Layered(HeldFirst {
        release: Mutex::new(Some(held)),
        ..HeldFirst::default()
    }));
    let commits = GroupCommit::start(store.clone());
    let first = commits.submit(put("first"));
    while !store.entered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Queued while the first write is held: one batch, with an empty key among them.
    let batch = [put("a"), put(""), put("b")].map(|commit| commits.submit(commit));
    release.send(()).unwrap();
    assert!(first.await.0.is_ok());
    let [a, refused, b] = batch;
    assert!(a.await.0.is_ok());
    assert!(matches!(
        refused.await.0,
        Err(Error::Store(StoreError::InvalidKey { .. }))
    ));
    assert!(b.await.0.is_ok());
    for key in ["first", "a", "b"] {
        assert_eq!(store.progress(key).unwrap(), Some(vec![1]), "{key}");
    }
    assert_eq!(commits.stats().commits, 3);
}

/// A memory store that serves two commits at once, and whose commits wait (up to two
/// seconds) until another is in flight beside them.
#[derive(Default)]
struct TwoAtOnce {
    inner: MemoryStore,
    inside: Mutex<usize>,
    most_inside: Mutex<usize>,
}

impl StoreLayer for TwoAtOnce {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        {
            let inside = &mut *lock(&self.inside);
            *inside += 1;
            let most = &mut *lock(&self.most_inside);
            *most = (*most).max(*inside);
        }
        let began = std::time::Instant::now();
        while *lock(&self.most_inside) < 2 && began.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let written = self.inner.commit(commits);
        *lock(&self.inside) -= 1;
        written
    }
    fn commit_concurrency(&self) -> usize {
        2
    }
}

#[tokio::test]
async fn a_store_that_serves_two_commits_at_once_gets_two_batches_in_flight() {
    let store = Arc::new(Layered(TwoAtOnce::default()));
    let commits = GroupCommit::start(store.clone());
    let first = commits.submit(put("first"));
    while *lock(&store.inside) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Queued while the first batch is being written: the second thread writes it.
    let second = commits.submit(put("second"));
    assert!(first.await.0.is_ok());
    assert!(second.await.0.is_ok());
    assert_eq!(*lock(&store.most_inside), 2);
    assert_eq!(store.progress("second").unwrap(), Some(vec![1]));
}

#[tokio::test]
async fn one_refused_commit_among_many_costs_a_few_writes_not_one_per_commit() {
    let (release, held) = mpsc::channel();
    let store = Arc::new(Layered(HeldFirst {
        release: Mutex::new(Some(held)),
        ..HeldFirst::default()
    }));
    let commits = GroupCommit::start(store.clone());
    let first = commits.submit(put("first"));
    while !store.entered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // 64 commits in one batch, the 40th of which the store refuses.
    let batch: Vec<_> = (0..64)
        .map(|i| match i {
            40 => put(""),
            i => put(&format!("k{i}")),
        })
        .map(|commit| commits.submit(commit))
        .collect();
    release.send(()).unwrap();
    assert!(first.await.0.is_ok());
    for (i, written) in batch.into_iter().enumerate() {
        let (result, _) = written.await;
        assert_eq!(result.is_ok(), i != 40, "commit {i}: {result:?}");
    }
    for i in (0..64).filter(|i| *i != 40) {
        assert_eq!(store.progress(&format!("k{i}")).unwrap(), Some(vec![1]));
    }
    // The halves around the refused one, one write per level: 6 for 64 commits.
    let stats = commits.stats();
    assert_eq!(stats.commits, 64);
    assert!(stats.writes <= 1 + 6, "{stats:?}");
}

/// `commit` under the lease of `worker`.
fn under(worker: WorkerId, commit: Commit) -> Commit {
    Commit {
        lease: Some(CommitLease {
            worker,
            unclaimed: Vec::new(),
            released: Vec::new(),
        }),
        ..commit
    }
}

#[tokio::test]
async fn a_commit_under_a_lapsed_lease_fails_alone_not_those_under_the_next_lease() {
    let (release, held) = mpsc::channel();
    let store = Arc::new(Layered(HeldFirst {
        release: Mutex::new(Some(held)),
        ..HeldFirst::default()
    }));
    // The worker's lease lapsed (`old`), and it joined again (`new`).
    let lease = Duration::from_secs(60);
    let (old, new) = (store.join(lease).unwrap(), store.join(lease).unwrap());
    store.leave(old).unwrap();
    let commits = GroupCommit::start(store.clone());
    let first = commits.submit(under(new, put("first")));
    while !store.entered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // One batch: a turn computed under the old lease, committed once the worker
    // joined again, among commits under the new one.
    let batch = [
        under(new, put("a")),
        under(old, put("stale")),
        under(new, put("b")),
    ]
    .map(|commit| commits.submit(commit));
    release.send(()).unwrap();
    assert!(first.await.0.is_ok());
    let [a, stale, b] = batch;
    let (a, stale, b) = (a.await.0, stale.await.0, b.await.0);
    assert!(a.is_ok(), "{a:?}");
    assert!(
        matches!(stale, Err(Error::Store(StoreError::LeaseExpired { worker })) if worker == old),
        "{stale:?}"
    );
    assert!(b.is_ok(), "{b:?}");
    assert_eq!(store.progress("a").unwrap(), Some(vec![1]));
    assert_eq!(store.progress("b").unwrap(), Some(vec![1]));
    assert_eq!(store.progress("stale").unwrap(), None);
}
