//! Races between a worker's commits and its claims (`durable_store::lease`), made
//! deterministic by a store wrapper that holds chosen commits back until a claim has
//! taken what the test waits for.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use durable_core::{OrchestrationContext, Runtime, orchestrator};
use durable_store::{Claim, ClaimFilter, Commit, Event, FjallStore, Holding, Store, StoreError};
use durable_store::{CommitLease, WorkId, WorkItem, WorkerId};
use durable_store::{Layered, StoreLayer};

use crate::common::{lifetime, store};

/// Adds up the first two `go` events it gets.
#[orchestrator]
async fn two_gos(ctx: OrchestrationContext, _input: ()) -> Result<u64, String> {
    let first = ctx.wait_event::<u64>("go").await;
    let second = ctx.wait_event::<u64>("go").await;
    Ok(first + second)
}

/// What the gate has seen.
#[derive(Default)]
struct Seen {
    /// The work id of the `go` message, once a commit enqueues it.
    go: Option<WorkId>,
    /// A claim took instance `x` (no worker held it).
    x_claimed: bool,
    /// A claim took the `go` message.
    go_claimed: bool,
}

/// A store that runs `before_commit` before each write and `after_claim` after each
/// claim, to stage a race.
#[derive(Clone)]
struct Gate {
    inner: FjallStore,
    hooks: Arc<dyn Hooks>,
}

trait Hooks: Send + Sync {
    fn before_commit(&self, _inner: &FjallStore, _commits: &[Commit]) {}
    fn after_claim(&self, _claim: &Claim) {}
}

/// Holds the commit enqueuing the `go` message back until a claim has taken instance
/// `x`, and then any commit removing that message until a claim has taken it (at most a
/// few seconds: a claim may never take it).
#[derive(Default)]
struct SendWhileClaimed {
    seen: (Mutex<Seen>, Condvar),
}

impl SendWhileClaimed {
    fn wait_until(&self, timeout: Duration, done: impl Fn(&Seen) -> bool) {
        let (seen, changed) = &self.seen;
        let seen = seen.lock().unwrap();
        let _ = changed
            .wait_timeout_while(seen, timeout, |seen| !done(seen))
            .unwrap();
    }

    fn update(&self, change: impl FnOnce(&mut Seen)) {
        let (seen, changed) = &self.seen;
        change(&mut seen.lock().unwrap());
        changed.notify_all();
    }
}

impl Hooks for SendWhileClaimed {
    fn before_commit(&self, _inner: &FjallStore, commits: &[Commit]) {
        if let Some(go) = commits.iter().find_map(go_in) {
            self.update(|seen| seen.go = Some(go));
            self.wait_until(Duration::from_secs(10), |seen| seen.x_claimed);
        } else {
            let go = self.seen.0.lock().unwrap().go;
            if let Some(go) = go
                && commits.iter().any(|commit| commit.dequeued.contains(&go))
            {
                self.wait_until(Duration::from_secs(3), |seen| seen.go_claimed);
            }
        }
    }

    fn after_claim(&self, claim: &Claim) {
        let x = (claim.instances.iter())
            .any(|instance| instance.id == "x" && instance.holding == Holding::Claimed);
        let go = self.seen.0.lock().unwrap().go;
        let took_go = go.is_some_and(|go| claim.items.iter().any(|(id, _)| *id == go));
        self.update(|seen| {
            seen.x_claimed |= x;
            seen.go_claimed |= took_go;
        });
    }
}

fn go_in(commit: &Commit) -> Option<WorkId> {
    commit.enqueued.iter().find_map(|(id, item)| match item {
        WorkItem::Message {
            event: Event::EventRaised { name, .. },
            ..
        } if name == "go" => Some(*id),
        _ => None,
    })
}

impl StoreLayer for Gate {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        self.hooks.before_commit(&self.inner, commits);
        self.inner.commit(commits)
    }
    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        let claim = self.inner.claim(worker, filter)?;
        self.hooks.after_claim(&claim);
        Ok(claim)
    }
}

/// A worker sends an event to an instance no worker holds (the message is left in the
/// store for a claim), and claims that instance before the send is durable: the event
/// reaches the instance once, not once from the send and again from the claim.
#[test]
fn an_event_sent_to_an_instance_the_sender_claims_meanwhile_arrives_once() {
    let (_dir, store) = store();
    lifetime(async {
        // `x` waits for its first `go`, held by no worker once `b` has left.
        let b = Runtime::builder(store.clone())
            .orchestrator(two_gos)
            .start()
            .await
            .unwrap();
        b.client().start(two_gos, "x", ()).await.unwrap();
        while !store.work_items().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b.shutdown().await;

        let hooks = Arc::new(SendWhileClaimed::default());
        let gate = Layered(Gate {
            inner: store.clone(),
            hooks: hooks.clone(),
        });
        let a = Runtime::builder(gate.clone())
            .orchestrator(two_gos)
            .start()
            .await
            .unwrap();
        let client = a.client();
        let raised = tokio::spawn(async move { client.raise_event("x", "go", &1u64).await });
        hooks.wait_until(Duration::from_secs(10), |seen| seen.go.is_some());
        // An event for `x` that no worker holds, so that `a` claims `x` while its `go`
        // is being committed.
        let record = store.instance("x").unwrap().unwrap();
        let noise = store.reserve_work_ids(1).unwrap();
        store
            .commit(&[Commit {
                enqueued: vec![(
                    noise,
                    WorkItem::Message {
                        instance: "x".into(),
                        incarnation: record.incarnation,
                        generation: None,
                        event: Event::EventRaised {
                            name: "noise".into(),
                            payload: b"0".to_vec(),
                        },
                    },
                )],
                ..Commit::default()
            }])
            .unwrap();
        raised.await.unwrap().unwrap();
        let instance = a.client().instance(two_gos, "x");
        let early = instance.wait(Duration::from_secs(3)).await;
        let gos = (store.history("x").unwrap().iter())
            .filter(|e| matches!(e, Event::EventRaised { name, .. } if name == "go"))
            .count();
        assert_eq!(gos, 1, "one `go` sent; finished early: {early:?}");
        a.client().raise_event("x", "go", &10u64).await.unwrap();
        assert_eq!(instance.wait(Duration::from_secs(60)).await.unwrap(), 11);
        a.shutdown().await;
    });
}

/// Starts `two_gos` as child `c`; 999 if the start is refused.
#[orchestrator]
async fn adopt(ctx: OrchestrationContext, _input: ()) -> Result<u64, String> {
    match ctx.sub_orchestration_with_id(two_gos, "c", ()).await {
        Ok(output) => Ok(output),
        Err(_) => Ok(999),
    }
}

/// Before the first commit that creates instance `c`, another worker creates it.
struct CreatedElsewhere {
    worker: WorkerId,
    done: Mutex<bool>,
}

impl Hooks for CreatedElsewhere {
    fn before_commit(&self, inner: &FjallStore, commits: &[Commit]) {
        let c = (commits.iter())
            .flat_map(|commit| &commit.instances)
            .find(|(id, _)| id == "c");
        let mut done = self.done.lock().unwrap();
        if let Some((_, record)) = c
            && !*done
        {
            *done = true;
            let mut record = record.clone();
            record.parent = None;
            inner
                .commit(&[Commit {
                    instances: vec![("c".into(), record)],
                    lease: Some(CommitLease {
                        worker: self.worker,
                        unclaimed: Vec::new(),
                        released: Vec::new(),
                    }),
                    ..Commit::default()
                }])
                .unwrap();
        }
    }
}

/// A parent starts child `c` while another worker creates `c` (after the parent read
/// that there was none): the store refuses the parent's commit as fenced, for the child.
/// The parent still holds itself: its turn runs again and finds `c` taken, rather than
/// the parent being dropped by the worker that holds it (and stuck there for as long as
/// that worker lives).
#[test]
fn a_parent_whose_child_id_another_worker_takes_meanwhile_goes_on() {
    let (_dir, store) = store();
    lifetime(async {
        let other = store.join(Duration::from_secs(600)).unwrap();
        let hooks = Arc::new(CreatedElsewhere {
            worker: other,
            done: Mutex::new(false),
        });
        let gate = Layered(Gate {
            inner: store.clone(),
            hooks,
        });
        let a = Runtime::builder(gate)
            .orchestrator(adopt)
            .orchestrator(two_gos)
            .start()
            .await
            .unwrap();
        let parent = a.client().start(adopt, "p", ()).await.unwrap();
        assert_eq!(parent.wait(Duration::from_secs(10)).await.unwrap(), 999);
        a.shutdown().await;
    });
}
