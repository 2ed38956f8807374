//! The order of one worker's messages to an instance: those sent after one it left in
//! the store for its claim wait behind it (see `Held::left`); and what a commit's sender
//! records as held once it is durable.

use std::collections::HashMap;
use std::sync::Arc;

use durable_store::{
    Commit, CommitLease, Event, MemoryStore, StatusKind, WorkId, WorkItem, WorkerId,
};

use super::super::{Busy, Engine, EngineParts, WorkIds};
use super::hold_written;
use crate::clock::SystemClock;
use crate::handle::BoxFuture;
use crate::registry::Registry;
use crate::runtime::inbox::{Delivery, Outgoing, Recipient};
use crate::runtime::unregistered::Unregistered;

const WORKER: WorkerId = 1;
const INSTANCE: &str = "@Tally@k";

/// A turn task that runs nothing: these tests look at commits, not turns.
fn no_turns(_: Arc<Engine>, _: String, _: Busy) -> BoxFuture<()> {
    Box::pin(async {})
}

fn engine() -> Arc<Engine> {
    Arc::new(Engine::new(EngineParts {
        store: Arc::new(MemoryStore::default()),
        registry: Registry::default(),
        unregistered: Unregistered::default(),
        max_payload: 1 << 20,
        clock: Arc::new(SystemClock),
        orchestrator_concurrency: 4,
        activity_concurrency: 4,
        cache_capacity: 16,
        unregistered_callees: Vec::new(),
        turn_task: no_turns,
        worker: WORKER,
        work_ids: WorkIds::from(1),
        tool: false,
    }))
}

fn event() -> Event {
    crate::runtime::entities::operation("add", b"1".to_vec(), None, None)
}

/// A commit that sends message `id` to [`INSTANCE`].
fn send(id: WorkId) -> Commit {
    let message = WorkItem::Message {
        instance: INSTANCE.to_string(),
        incarnation: 1,
        generation: None,
        event: event(),
    };
    Commit {
        enqueued: vec![(id, message)],
        ..Commit::default()
    }
}

/// What the claim of message `id` hands the engine.
fn claimed(id: WorkId) -> Outgoing {
    let to = Recipient::any_generation(1);
    Outgoing {
        instance: INSTANCE.to_string(),
        delivery: Delivery::message(id, to, event()),
    }
}

/// The messages of `commit`, written under this worker's lease, left for a claim.
fn left_for_claim(engine: &Engine, commit: Commit) -> Vec<WorkId> {
    let (commit, _writing) = engine.leased(commit, WORKER);
    commit.lease.expect("written under a lease").unclaimed
}

/// The interleaving that ran a client's second signal before its first on PostgreSQL:
/// the first was committed while its entity was not held here yet (the commit that made
/// it was durable, and not yet known to be), so it was left for the claim; the second,
/// committed once the entity was held, was delivered in memory at once, and ran first.
#[tokio::test]
async fn a_message_sent_after_one_left_for_the_claim_waits_behind_it() {
    let engine = engine();
    assert_eq!(left_for_claim(&engine, send(1)), vec![1]);
    // The commit that made the instance is known durable: this worker holds it.
    engine.hold(INSTANCE, StatusKind::Pending);
    assert_eq!(
        left_for_claim(&engine, send(2)),
        vec![2],
        "overtakes message 1"
    );
    // The claim delivers both, in id order: what comes next goes in memory again.
    engine.deliver_all(vec![claimed(1), claimed(2)]);
    assert_eq!(left_for_claim(&engine, send(3)), Vec::<WorkId>::new());
}

/// A message left for an instance another worker holds holds back nothing here once the
/// claim loop has seen it is not this worker's.
#[tokio::test]
async fn a_message_left_for_another_worker_is_forgotten_between_claims() {
    let engine = engine();
    assert_eq!(left_for_claim(&engine, send(1)), vec![1]);
    engine.forget_left_elsewhere();
    engine.hold(INSTANCE, StatusKind::Running);
    // The claim that took the instance over is done (see the take-over test below).
    engine.forget_left_elsewhere();
    assert_eq!(left_for_claim(&engine, send(2)), Vec::<WorkId>::new());
}

/// The ids of the messages queued for [`INSTANCE`]'s next turn, in order.
fn queued(engine: &Engine) -> Vec<WorkId> {
    let (batch, _) = (engine.inboxes())
        .next_turn(INSTANCE, true)
        .expect("messages queued");
    batch.iter().map(|d| d.id).collect()
}

/// A commit that creates [`INSTANCE`].
fn create() -> Commit {
    let record = durable_store::InstanceRecord::pending("Tally".into(), 1, Vec::new(), 0, 1, None);
    Commit {
        instances: vec![(INSTANCE.to_string(), record)],
        ..Commit::default()
    }
}

/// A claim's delivery deferred until the commit that creates its instance is known
/// durable is not overtaken by the next claim's, which finds the instance held already:
/// one sender's messages run in the order sent.
#[tokio::test]
async fn a_later_claim_does_not_overtake_a_delivery_deferred_for_a_commit() {
    let engine = engine();
    let (_, writing) = engine.leased(create(), WORKER);
    // The first claim finds the instance held in the store, not yet here: message 1
    // waits for the commit.
    engine.deliver_all(vec![claimed(1)]);
    // The commit is durable: the instance is held here; the next claim takes message 2
    // before the deferred delivery has run.
    engine.hold(INSTANCE, StatusKind::Pending);
    engine.deliver_all(vec![claimed(2)]);
    drop(writing);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(queued(&engine), vec![1, 2]);
}

/// An instance a claim takes over (another worker's lease lapsed) with a message this
/// worker left for it: what this worker sends it while the take-over has not delivered
/// that message yet waits behind it, although the entry that held it back was forgotten
/// before the claim (the instance was another worker's then).
#[tokio::test]
async fn a_message_sent_during_a_take_over_waits_behind_what_the_claim_took() {
    let engine = engine();
    assert_eq!(left_for_claim(&engine, send(1)), vec![1]);
    // The claim loop, before the claim that takes the instance over.
    engine.forget_left_elsewhere();
    engine.hold(INSTANCE, StatusKind::Running);
    assert_eq!(
        left_for_claim(&engine, send(2)),
        vec![2],
        "overtakes message 1, which the take-over delivers once its commit is durable"
    );
    engine.deliver_all(vec![claimed(1)]);
    engine.forget_left_elsewhere();
    engine.deliver_all(vec![claimed(2)]);
    assert_eq!(queued(&engine), vec![1, 2]);
    assert_eq!(left_for_claim(&engine, send(3)), Vec::<WorkId>::new());
}

/// The commit that creates an instance of a limited orchestrator releases it (a claim
/// starts it as the limit allows), and this worker's claim may start it before the
/// commit's sender learns the commit is durable: the instance stays held here. (Dropped,
/// it ran unheld, its activity results were stored as messages that its claim took and
/// did not deliver, and it never finished.) One held here as the commit released it is
/// let go.
#[test]
fn an_instance_a_commit_released_stays_held_once_a_claim_took_it() {
    let mut commit = create();
    commit.lease = Some(CommitLease {
        worker: WORKER,
        unclaimed: Vec::new(),
        released: vec![INSTANCE.to_string()],
    });
    let mut held = HashMap::new();
    // The claim took the instance, then the sender learns the commit is durable.
    held.insert(INSTANCE.to_string(), StatusKind::Pending);
    hold_written(&mut held, &commit, &[]);
    assert_eq!(held.get(INSTANCE), Some(&StatusKind::Pending));
    hold_written(&mut held, &commit, &[INSTANCE.to_string()]);
    assert_eq!(held.get(INSTANCE), None);
}
