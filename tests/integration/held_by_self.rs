//! A message another worker sends to an instance this worker is creating, claimed by this
//! worker between the moment its creating commit is durable and the moment the commit's
//! sender learns it (and records that the worker holds the instance): the claim finds the
//! instance held by the worker itself (`Holding::Held`) and takes the message, which must
//! then reach the instance here. Dropped, it stayed in the store held by the worker, and
//! nothing ran it until the worker's lease ended (seen with two PostgreSQL workers
//! creating the same entities at once).
//!
//! A store wrapper stages the race: once the creating commit is written, and before the
//! store call returns, it writes the other worker's message (no lease: no worker holds
//! it) and waits until the worker's claim loop has taken it and handed it out.
//!
//! The same held-by-itself state came of a client's start that its caller stopped
//! waiting for once the commit was queued: the commit was written, and nothing here
//! learnt it (nor delivered its `Started`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use durable_core::{OrchestrationContext, Runtime, entity, orchestrator};
use durable_store::{Claim, ClaimFilter, Commit, Event, FjallStore, PostgresStore, Store};
use durable_store::{Layered, StoreLayer, WorkId, WorkItem, WorkerId};
use durable_store::{StoreError, TestServer};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};

/// Adds up the first two `go` events it gets.
#[orchestrator]
async fn two_gos(ctx: OrchestrationContext, _input: ()) -> Result<u64, String> {
    let first = ctx.wait_event::<u64>("go").await;
    let second = ctx.wait_event::<u64>("go").await;
    Ok(first + second)
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

#[entity]
impl Counter {
    pub fn add(&mut self, amount: i64) {
        self.total += amount;
    }
}

/// What the race has come to.
#[derive(Default)]
struct Seen {
    /// The message written for the other worker, once written.
    sent: Option<WorkId>,
    /// How many claims began.
    claims: u64,
    /// The claim that took the message, by its count among the claims.
    taken_by: Option<u64>,
}

impl Seen {
    /// Whether a claim took the message and the claim loop began the next claim.
    fn handed_out(&self) -> bool {
        self.taken_by.is_some_and(|taken| self.claims > taken)
    }
}

/// Once a commit creating `instance` is written, writes `event` for it (as another worker
/// would, holding nothing) and holds the store call back until a claim took that message
/// and the claim loop began the next claim (so it handed out what it took).
#[derive(Clone)]
struct SendWhileCreating {
    inner: Arc<dyn Store>,
    instance: String,
    event: Event,
    seen: Arc<(Mutex<Seen>, Condvar)>,
}

impl SendWhileCreating {
    fn new(inner: Arc<dyn Store>, instance: &str, event: Event) -> Self {
        Self {
            inner,
            instance: instance.to_string(),
            event,
            seen: Arc::default(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Seen)) {
        let (seen, changed) = &*self.seen;
        change(&mut seen.lock().unwrap());
        changed.notify_all();
    }

    /// Whether the claim loop took the message and went on to its next claim; else what
    /// it came to.
    fn handed_out(&self) -> Result<(), String> {
        let seen = self.seen.0.lock().unwrap();
        if seen.handed_out() {
            return Ok(());
        }
        Err(format!(
            "the claim loop did not take the message sent ({:?}) and go on: {} claims, taken by {:?}",
            seen.sent, seen.claims, seen.taken_by
        ))
    }

    /// Writes the other worker's message, for run `incarnation`, and waits (at most a
    /// few seconds) until a claim took it and the claim loop went on.
    fn send_and_wait(&self, incarnation: u64) {
        let id = self.inner.reserve_work_ids(1).unwrap();
        // Known before it is written: a claim may take it at once.
        self.update(|seen| seen.sent = Some(id));
        self.inner
            .commit(&[Commit {
                enqueued: vec![(
                    id,
                    WorkItem::Message {
                        instance: self.instance.clone(),
                        incarnation,
                        generation: None,
                        event: self.event.clone(),
                    },
                )],
                ..Commit::default()
            }])
            .unwrap();
        let (seen, changed) = &*self.seen;
        let _ = changed
            .wait_timeout_while(seen.lock().unwrap(), Duration::from_secs(5), |seen| {
                !seen.handed_out()
            })
            .unwrap();
    }
}

impl StoreLayer for SendWhileCreating {
    fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        // The run a commit of this worker creates (its record new: no history).
        let created = (commits.iter())
            .filter(|commit| commit.lease.is_some())
            .flat_map(|commit| &commit.instances)
            .find(|(id, record)| *id == self.instance && record.history_len == 0)
            .map(|(_, record)| record.incarnation);
        let result = self.inner.commit(commits);
        let first = self.seen.0.lock().unwrap().sent.is_none();
        if let Some(incarnation) = created
            && result.is_ok()
            && first
        {
            self.send_and_wait(incarnation);
        }
        result
    }

    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        self.update(|seen| seen.claims += 1);
        let claim = self.inner.claim(worker, filter)?;
        let sent = self.seen.0.lock().unwrap().sent;
        if let Some(sent) = sent
            && claim.items.iter().any(|(id, _)| *id == sent)
        {
            self.update(|seen| seen.taken_by = Some(seen.claims));
        }
        Ok(claim)
    }
}

/// An event another worker raises to an instance this worker's client has just started,
/// claimed by this worker before the start's sender learnt its commit is durable: the
/// instance gets it.
#[test]
fn an_event_claimed_while_its_instance_is_being_started_here_arrives() {
    let (_dir, inner) = store();
    lifetime(async {
        let go = Event::EventRaised {
            name: "go".into(),
            payload: serde_json::to_vec(&1u64).unwrap(),
        };
        let gate = Layered(SendWhileCreating::new(Arc::new(inner.clone()), "x", go));
        let runtime = Runtime::builder(gate.clone())
            .orchestrator(two_gos)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let instance = client.start(two_gos, "x", ()).await.unwrap();
        gate.handed_out().unwrap();
        client.raise_event("x", "go", &10u64).await.unwrap();
        let output = instance.wait(Duration::from_secs(10)).await;
        assert_eq!(
            output.unwrap(),
            11,
            "both events reach the instance; work items left: {:?}",
            inner.work_items().unwrap()
        );
        runtime.shutdown().await;
    });
}

/// A signal another worker sends to an entity this worker's client makes with its first
/// signal, claimed by this worker before the signal's sender learnt its commit is
/// durable: the entity runs both operations.
#[test]
fn a_signal_claimed_while_its_entity_is_being_made_here_runs() {
    let (_dir, inner) = store();
    lifetime(signal_while_made(Arc::new(inner)));
}

/// [`a_signal_claimed_while_its_entity_is_being_made_here_runs`] on PostgreSQL, where it
/// was seen with two workers.
#[test]
fn a_signal_claimed_while_its_entity_is_being_made_here_runs_on_postgres() {
    let database = TestServer::shared().database();
    let inner = PostgresStore::open(database.url()).unwrap();
    lifetime(signal_while_made(Arc::new(inner)));
}

/// Makes entity `c` with a client's signal on `inner`, while another worker's signal to it
/// is written and claimed; checks that both run.
async fn signal_while_made(inner: Arc<dyn Store>) {
    let add = Event::EntityOperation {
        operation: "add".into(),
        input: serde_json::to_vec(&5i64).unwrap(),
        sender: None,
        at_ms: None,
    };
    let gate = Layered(SendWhileCreating::new(inner.clone(), "@Counter@c", add));
    let runtime = Runtime::builder(gate.clone())
        .entity::<Counter>()
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    client.signal_entity(Counter::add, "c", 1).await.unwrap();
    gate.handed_out().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = client.entity_state::<Counter>("c").await.unwrap();
        if state.as_ref().is_some_and(|s| s.total == 6) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the entity ran {state:?}, not both operations (6); work items left: {:?}",
            inner.work_items().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.shutdown().await;
}

/// Holds back the commits that create `instance` until told to let them through.
#[derive(Clone)]
struct HoldCreation {
    inner: FjallStore,
    instance: String,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl HoldCreation {
    fn let_through(&self) {
        let (open, changed) = &*self.open;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

impl StoreLayer for HoldCreation {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }

    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        let creates = (commits.iter())
            .flat_map(|commit| &commit.instances)
            .any(|(id, record)| *id == self.instance && record.history_len == 0);
        if creates {
            let (open, changed) = &*self.open;
            let _ = changed
                .wait_timeout_while(open.lock().unwrap(), Duration::from_secs(10), |open| !*open)
                .unwrap();
        }
        self.inner.commit(commits)
    }
}

/// A client's start whose caller stops waiting for it (a timeout, a request handler
/// dropped) once its commit is queued: the commit is written, and the instance runs here
/// all the same, rather than sit in the store held by this worker, its `Started` message
/// delivered to no one, until the worker's lease ends.
#[test]
fn an_instance_whose_start_was_abandoned_once_queued_runs() {
    let (_dir, inner) = store();
    lifetime(async {
        let gate = Layered(HoldCreation {
            inner: inner.clone(),
            instance: "x".into(),
            open: Arc::default(),
        });
        let runtime = Runtime::builder(gate.clone())
            .orchestrator(two_gos)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let started = client.start(two_gos, "x", ());
        let abandoned = tokio::time::timeout(Duration::from_millis(300), started).await;
        assert!(abandoned.is_err(), "the start was held back: {abandoned:?}");
        gate.let_through();
        while inner.instance("x").unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        client.raise_event("x", "go", &1u64).await.unwrap();
        client.raise_event("x", "go", &10u64).await.unwrap();
        let output = client
            .instance(two_gos, "x")
            .wait(Duration::from_secs(10))
            .await;
        assert_eq!(
            output.unwrap(),
            11,
            "the instance ran; work items left: {:?}",
            inner.work_items().unwrap()
        );
        runtime.shutdown().await;
    });
}
