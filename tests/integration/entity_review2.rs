//! Review of orchestrations and entities run together (issue 14, step 3): lock sets
//! taken in opposite orders, sections ended from outside while acquiring, panics and
//! timeouts in and around sections, calls and signals flooding a locked entity, answers
//! that come after their caller ended, parallel calls, payload limits, and a stored
//! state that does not decode with a caller waiting on it; on fjall, and on PostgreSQL
//! with two workers.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use durable_core::record::{Event, Status, WorkItem};
use durable_core::{
    Client, EntityId, Instance, OrchestrationContext, Runtime, RuntimeBuilder, Store, entity,
    orchestrator,
};
use durable_store::{
    ClaimFilter, Commit, CommitLease, InstanceRecord, PostgresStore, TestServer, WorkId, WorkerId,
};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};
use crate::entity_support::{self, WAIT, postgres_worker, run, until, until_state, with_runtime};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Ledger {
    balance: i64,
    /// The inputs of `note`, in the order they ran.
    log: Vec<i64>,
}

#[entity]
impl Ledger {
    /// Adds `amount`; refuses to go below zero. The balance after it.
    pub fn add(&mut self, amount: i64) -> Result<i64, String> {
        if self.balance + amount < 0 {
            return Err(format!("insufficient funds: {}", self.balance));
        }
        self.balance += amount;
        Ok(self.balance)
    }

    pub fn note(&mut self, x: i64) {
        self.log.push(x);
    }

    /// What `note` saw so far.
    pub fn log(&mut self) -> Vec<i64> {
        self.log.clone()
    }

    pub fn boom(&mut self) {
        panic!("boom");
    }

    /// An output of `n` bytes.
    pub fn bulk(&mut self, n: usize) -> String {
        "x".repeat(n)
    }

    /// Adds `amount`, below zero too. The balance after it.
    pub fn shift(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    /// The length of `text`.
    pub fn measure(&mut self, text: String) -> usize {
        text.len()
    }
}

/// `Ledger` changed incompatibly: a stored state no longer decodes.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct LedgerV2 {
    balance: String,
}

#[entity(name = "Ledger")]
impl LedgerV2 {
    pub fn add(&mut self, amount: i64) -> Result<i64, String> {
        self.balance.push('+');
        Ok(amount)
    }
}

/// `Ledger` as a caller built against other code sees it: `add` takes text, and
/// `vanish` is an operation the deployed `Ledger` does not have.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct LedgerElsewhere {
    balance: i64,
}

#[entity(name = "Ledger")]
impl LedgerElsewhere {
    pub fn add(&mut self, _text: String) -> i64 {
        self.balance
    }

    pub fn vanish(&mut self) {}
}

/// A never-registered entity type.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Elsewhere {
    n: u64,
}

#[entity]
impl Elsewhere {
    pub fn bump(&mut self) {
        self.n += 1;
    }
}

fn ledger(key: &str) -> EntityId {
    EntityId::of::<Ledger>(key)
}

/// Locks `from` and `to` (named in that order), moves `amount` between them.
#[orchestrator]
async fn transfer(
    ctx: OrchestrationContext,
    (from, to, amount): (String, String, i64),
) -> Result<(), String> {
    let section = ctx.lock([ledger(&from), ledger(&to)]).await?;
    ctx.call_entity(Ledger::add, from.as_str(), -amount).await?;
    ctx.call_entity(Ledger::add, to.as_str(), amount).await?;
    section.release();
    Ok(())
}

/// Locks `from` and `to`, moves `amount` between them, whatever the balances.
#[orchestrator]
async fn shift(
    ctx: OrchestrationContext,
    (from, to, amount): (String, String, i64),
) -> Result<(), String> {
    let section = ctx.lock([ledger(&from), ledger(&to)]).await?;
    ctx.call_entity(Ledger::shift, from.as_str(), -amount)
        .await?;
    ctx.call_entity(Ledger::shift, to.as_str(), amount).await?;
    section.release();
    Ok(())
}

/// Locks `keys`, then waits for the event `go` inside the section; the log of the first.
#[orchestrator]
async fn hold(ctx: OrchestrationContext, keys: Vec<String>) -> Result<Vec<i64>, String> {
    let _section = ctx.lock(keys.iter().map(|k| ledger(k))).await?;
    ctx.wait_event::<()>("go").await;
    Ok(ctx.call_entity(Ledger::log, keys[0].as_str(), ()).await?)
}

/// Locks `key`, adds 1 to it, and panics inside the section.
#[orchestrator]
async fn panic_in_section(ctx: OrchestrationContext, key: String) -> Result<(), String> {
    let _section = ctx.lock([ledger(&key)]).await?;
    ctx.call_entity(Ledger::add, key.as_str(), 1).await?;
    panic!("the orchestrator panics inside its section");
}

/// Signals and calls `key` in turn; the log the last call reads.
#[orchestrator]
async fn interleaved(ctx: OrchestrationContext, key: String) -> Result<Vec<i64>, String> {
    ctx.signal_entity(Ledger::note, key.as_str(), 1)?;
    ctx.call_entity(Ledger::note, key.as_str(), 2).await?;
    ctx.signal_entity(Ledger::note, key.as_str(), 3)?;
    ctx.signal_entity(Ledger::note, key.as_str(), 4)?;
    ctx.call_entity(Ledger::note, key.as_str(), 5).await?;
    Ok(ctx.call_entity(Ledger::log, key.as_str(), ()).await?)
}

/// Calls `key`'s log, giving up after 50 ms.
#[orchestrator]
async fn call_or_give_up(ctx: OrchestrationContext, key: String) -> Result<String, String> {
    match ctx
        .timeout(
            Duration::from_millis(50),
            ctx.call_entity(Ledger::log, key.as_str(), ()),
        )
        .await
    {
        Ok(_) => Ok("answered".into()),
        Err(_) => Ok("gave up".into()),
    }
}

/// Calls `key` twice at once, outside a section.
#[orchestrator]
async fn twice(ctx: OrchestrationContext, key: String) -> Result<(i64, i64), String> {
    let (a, b) = ctx
        .join2(
            ctx.call_entity(Ledger::add, key.as_str(), 1),
            ctx.call_entity(Ledger::add, key.as_str(), 2),
        )
        .await;
    Ok((a?, b?))
}

/// Asks for a lock on `key`, giving up after 200 ms; then notes 7 on it.
#[orchestrator]
async fn lock_or_give_up(ctx: OrchestrationContext, key: String) -> Result<String, String> {
    let got = ctx
        .timeout(Duration::from_millis(200), ctx.lock([ledger(&key)]))
        .await;
    let what = match got {
        Ok(section) => {
            section?.release();
            "granted"
        }
        Err(_) => "gave up",
    };
    ctx.signal_entity(Ledger::note, key.as_str(), 7)?;
    Ok(what.into())
}

/// Calls `bulk(n)` on `key`: the output's length, or the call's error message.
#[orchestrator]
async fn bulk_call(ctx: OrchestrationContext, (key, n): (String, usize)) -> Result<String, String> {
    match ctx.call_entity(Ledger::bulk, key.as_str(), n).await {
        Ok(out) => Ok(format!("{} bytes", out.len())),
        Err(e) => Ok(format!("failed: {}", e.message())),
    }
}

/// Calls `boom` on `key` inside a section, then adds 1 in it.
#[orchestrator]
async fn boom_in_section(ctx: OrchestrationContext, key: String) -> Result<(bool, i64), String> {
    let section = ctx.lock([ledger(&key)]).await?;
    let panicked = ctx
        .call_entity(Ledger::boom, key.as_str(), ())
        .await
        .err()
        .is_some_and(|e| e.is_panic());
    let balance = ctx.call_entity(Ledger::add, key.as_str(), 1).await?;
    section.release();
    Ok((panicked, balance))
}

/// Asks for a lock on `key`, giving up after 200 ms; then asks again and waits.
#[orchestrator]
async fn lock_twice(ctx: OrchestrationContext, key: String) -> Result<String, String> {
    let first = ctx
        .timeout(Duration::from_millis(200), ctx.lock([ledger(&key)]))
        .await;
    let first = if first.is_ok() { "granted" } else { "gave up" };
    let section = ctx.lock([ledger(&key)]).await?;
    let balance = ctx.call_entity(Ledger::add, key.as_str(), 10).await?;
    section.release();
    Ok(format!("{first}, then {balance}"))
}

/// Locks `key` and calls `measure` with `n` bytes inside the section.
#[orchestrator]
async fn measure_in_section(
    ctx: OrchestrationContext,
    (key, n): (String, usize),
) -> Result<usize, String> {
    let _section = ctx.lock([ledger(&key)]).await?;
    Ok(ctx
        .call_entity(Ledger::measure, key.as_str(), "y".repeat(n))
        .await?)
}

/// Locks a `Ledger` and an `Elsewhere` entity and waits for `go`.
#[orchestrator]
async fn lock_elsewhere(ctx: OrchestrationContext, key: String) -> Result<(), String> {
    let _section = ctx
        .lock([ledger(&key), EntityId::of::<Elsewhere>(key.as_str())])
        .await?;
    ctx.wait_event::<()>("go").await;
    Ok(())
}

/// Adds 5 to `key` (the code of a deployment whose `Ledger` state does not decode).
#[orchestrator(name = "add_five")]
async fn add_five_v2(ctx: OrchestrationContext, key: String) -> Result<i64, String> {
    Ok(ctx.call_entity(LedgerV2::add, key.as_str(), 5).await?)
}

/// Adds 5 to `key`.
#[orchestrator(name = "add_five")]
async fn add_five(ctx: OrchestrationContext, key: String) -> Result<i64, String> {
    Ok(ctx.call_entity(Ledger::add, key.as_str(), 5).await?)
}

/// Generation 0 calls `bulk` on `g` and gives up after 50 ms, continuing as new;
/// generation 1 adds 7 to `g`.
#[orchestrator]
async fn generations(ctx: OrchestrationContext, round: u32) -> Result<i64, String> {
    if round == 0 {
        let call = ctx.call_entity(Ledger::bulk, "g", 3);
        if ctx.timeout(Duration::from_millis(50), call).await.is_err() {
            return ctx.continue_as_new(1).await;
        }
        return Err("answered in time".into());
    }
    Ok(ctx.call_entity(Ledger::add, "g", 7).await?)
}

/// Locks `s` and waits for `go` (as first deployed).
#[orchestrator(name = "section_code")]
async fn section_code_v1(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let _section = ctx.lock([ledger("s")]).await?;
    ctx.wait_event::<()>("go").await;
    Ok(())
}

/// Locks `s2` instead: its history's lock request no longer matches.
#[orchestrator(name = "section_code")]
async fn section_code_v2(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let _section = ctx.lock([ledger("s2")]).await?;
    ctx.wait_event::<()>("go").await;
    Ok(())
}

/// Calls `Ledger` as other code sees it: an input that does not decode, an unknown
/// operation.
#[orchestrator]
async fn mismatched(ctx: OrchestrationContext, key: String) -> Result<(bool, bool), String> {
    let input = ctx
        .call_entity(LedgerElsewhere::add, key.as_str(), "ten".to_string())
        .await
        .err()
        .is_some_and(|e| e.is_undecodable_input());
    let unknown = ctx
        .call_entity(LedgerElsewhere::vanish, key.as_str(), ())
        .await
        .err()
        .is_some_and(|e| e.is_unknown_operation());
    Ok((input, unknown))
}

/// Five sections over `key` one after the other, each adding 1 with two calls at once
/// (one of them `add(0)`); the balances the last calls saw.
#[orchestrator]
async fn sections_in_a_row(ctx: OrchestrationContext, key: String) -> Result<Vec<i64>, String> {
    let mut seen = Vec::new();
    for _ in 0..5 {
        let section = ctx.lock([ledger(&key)]).await?;
        let (a, b) = ctx
            .join2(
                ctx.call_entity(Ledger::add, key.as_str(), 1),
                ctx.call_entity(Ledger::add, key.as_str(), 0),
            )
            .await;
        seen.push(a?.max(b?));
        section.release();
    }
    Ok(seen)
}

/// Signals `note(at_ms)` to `key` 300 ms from now, then ends.
#[orchestrator]
async fn note_later(ctx: OrchestrationContext, key: String) -> Result<(), String> {
    let at = ctx.now() + Duration::from_millis(300);
    ctx.signal_entity_at(Ledger::note, key.as_str(), 99, at)?;
    Ok(())
}

/// Signals `note(1)` to `key`, waits for `next`, signals `note(2)`.
#[orchestrator]
async fn two_signals(ctx: OrchestrationContext, key: String) -> Result<(), String> {
    ctx.signal_entity(Ledger::note, key.as_str(), 1)?;
    ctx.wait_event::<()>("next").await;
    ctx.signal_entity(Ledger::note, key.as_str(), 2)?;
    Ok(())
}

fn builder(store: impl Store) -> RuntimeBuilder {
    Runtime::builder(store)
        .entity::<Ledger>()
        .orchestrator(transfer)
        .orchestrator(hold)
        .orchestrator(panic_in_section)
        .orchestrator(interleaved)
        .orchestrator(call_or_give_up)
        .orchestrator(twice)
        .orchestrator(lock_or_give_up)
        .orchestrator(bulk_call)
        .orchestrator(boom_in_section)
        .orchestrator(lock_twice)
        .orchestrator(measure_in_section)
        .orchestrator(lock_elsewhere)
        .orchestrator(add_five)
        .orchestrator(shift)
        .orchestrator(generations)
        .orchestrator(mismatched)
        .orchestrator(sections_in_a_row)
        .orchestrator(note_later)
        .orchestrator(two_signals)
}

/// The instance holding `key`'s lock, if it is locked.
fn lock_owner(store: &impl Store, key: &str) -> Option<String> {
    entity_support::lock_owner(store, &ledger(key).to_string()).map(|p| p.instance)
}

/// Waits until the store holds no work item and none of `keys` is locked.
async fn until_settled(store: &impl Store, keys: &[&str]) {
    let ids: Vec<String> = keys.iter().map(|k| ledger(k).to_string()).collect();
    entity_support::until_settled(store, &ids).await;
}

/// Waits until `key`'s lock is held by `owner`.
async fn until_locked_by(store: &impl Store, key: &str, owner: &str) {
    entity_support::until_locked_by(store, &ledger(key).to_string(), owner).await;
}

/// Waits until the messages waiting for `key` include one `found` picks.
async fn until_queued(store: &impl Store, key: &str, found: impl Fn(&Event) -> bool) {
    entity_support::until_queued(store, &ledger(key).to_string(), found).await;
}

/// Starts `hold` as `id` over `key` alone, and waits until it holds the lock.
async fn hold_locked(client: &Client, store: &impl Store, id: &str, key: &str) -> Instance<hold> {
    let holder = client.start(hold, id, vec![key.to_string()]).await.unwrap();
    until_locked_by(store, key, id).await;
    holder
}

async fn state(client: &Client, key: &str) -> Ledger {
    client
        .entity_state::<Ledger>(key)
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn transfers_in_opposite_orders(client: &Client, store: &impl Store, prefix: &str) {
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    client
        .signal_entity(Ledger::add, a.as_str(), 100)
        .await
        .unwrap();
    client
        .signal_entity(Ledger::add, b.as_str(), 100)
        .await
        .unwrap();
    let mut started = Vec::new();
    for i in 0..16 {
        let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let id = format!("{prefix}t{i}");
        started.push(
            client
                .start(transfer, id, (from.clone(), to.clone(), i + 1))
                .await
                .unwrap(),
        );
    }
    for instance in started {
        instance.wait(WAIT).await.unwrap();
    }
    until_settled(store, &[a.as_str(), b.as_str()]).await;
    // a -> b: 1 + 3 + .. + 15 = 64; b -> a: 2 + 4 + .. + 16 = 72.
    assert_eq!(state(client, &a).await.balance, 100 - 64 + 72);
    assert_eq!(state(client, &b).await.balance, 100 + 64 - 72);
}

/// Sixteen transfers locking the same two entities, named in opposite orders, all at
/// once: none deadlocks, and the balances add up.
#[test]
fn overlapping_locks_in_opposite_orders_do_not_deadlock() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        transfers_in_opposite_orders(client, &store, "").await;
    });
}

/// The same on PostgreSQL, the transfers and the entities spread over two workers.
#[test]
fn on_postgres_overlapping_locks_in_opposite_orders_do_not_deadlock() {
    let database = TestServer::shared().database();
    let store = PostgresStore::open(database.url()).unwrap();
    lifetime(async {
        let worker = || postgres_worker(database.url(), Duration::from_secs(5), builder);
        let a = worker().start().await.unwrap();
        let b = worker().start().await.unwrap();
        transfers_in_opposite_orders(&b.client(), &store, "pg-").await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// An orchestration terminated while its lock request waits behind another section (on
/// the second entity of its set: the first is locked for it): once the other section
/// ends, no entity stays locked, and what was sent to them meanwhile runs.
#[test]
fn terminated_while_acquiring_behind_another_section_leaves_nothing_locked() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let holder = hold_locked(client, &store, "holder", "y").await;
        let waiter = client
            .start(hold, "waiter", vec!["x".to_string(), "y".to_string()])
            .await
            .unwrap();
        until_locked_by(&store, "x", "waiter").await;
        until_queued(&store, "y", |e| matches!(e, Event::EntityLock { .. })).await;
        waiter.terminate("enough").await.unwrap();
        client.signal_entity(Ledger::note, "x", 1).await.unwrap();
        client.signal_entity(Ledger::note, "y", 2).await.unwrap();
        // x is unlocked by the terminated waiter; y waits for the holder.
        until_state(client, "x", |l: &Ledger| l.log == [1]).await;
        assert_eq!(lock_owner(&store, "y").as_deref(), Some("holder"));
        holder.raise_event("go", &()).await.unwrap();
        assert_eq!(holder.wait(WAIT).await.unwrap(), Vec::<i64>::new());
        until_settled(&store, &["x", "y"]).await;
        assert_eq!(state(client, "y").await.log, [2]);
    });
}

/// An orchestrator that panics inside its section fails, and its entity is unlocked:
/// a signal sent to it afterwards runs.
#[test]
fn a_panic_inside_a_section_fails_the_orchestration_and_unlocks() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let instance = client
            .start(panic_in_section, "panicky", "p".to_string())
            .await
            .unwrap();
        let failed = instance.wait(WAIT).await;
        assert!(failed.is_err(), "{failed:?}");
        client.signal_entity(Ledger::note, "p", 9).await.unwrap();
        until_settled(&store, &["p"]).await;
        let p = state(client, "p").await;
        assert_eq!((p.balance, p.log), (1, vec![9]));
    });
}

/// An operation that panics, called inside a section, fails the call as a panic, leaves
/// the state as it was, and the section goes on.
#[test]
fn an_operation_panicking_inside_a_section_fails_only_that_call() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let out = run(client, boom_in_section, "boomer", "q".to_string())
            .await
            .unwrap();
        assert_eq!(out, (true, 1));
        until_settled(&store, &["q"]).await;
    });
}

/// While a section holds an entity, a client floods it with signals: they wait, the
/// section's call sees none of them, and afterwards they run in the order sent.
#[test]
fn signals_flooding_a_locked_entity_wait_then_run_in_order() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let holder = hold_locked(client, &store, "h", "f").await;
        for i in 0..50 {
            client.signal_entity(Ledger::note, "f", i).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(state(client, "f").await.log, Vec::<i64>::new());
        holder.raise_event("go", &()).await.unwrap();
        assert_eq!(holder.wait(WAIT).await.unwrap(), Vec::<i64>::new());
        until_settled(&store, &["f"]).await;
        assert_eq!(state(client, "f").await.log, (0..50).collect::<Vec<_>>());
    });
}

/// An orchestration's signals and calls to one entity run in the order it made them.
#[test]
fn an_orchestrations_signals_and_calls_run_in_its_order() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        for i in 0..5 {
            let key = format!("o{i}");
            let log = run(client, interleaved, format!("i{i}"), key)
                .await
                .unwrap();
            assert_eq!(log, [1, 2, 3, 4, 5]);
        }
    });
}

/// A call whose caller gave up on it and ended: when the entity (absent until a restart)
/// answers, the answer is dropped and nothing stays in the store.
#[test]
fn an_answer_after_its_caller_ended_is_dropped() {
    let (_dir, store) = store();
    with_runtime(
        Runtime::builder(store.clone()).orchestrator(call_or_give_up),
        async |client| {
            let out = run(client, call_or_give_up, "impatient", "late".to_string())
                .await
                .unwrap();
            assert_eq!(out, "gave up");
        },
    );
    with_runtime(builder(store.clone()), async |_client| {
        until_settled(&store, &["late"]).await;
    });
    let record = store.instance("impatient").unwrap().unwrap();
    assert!(matches!(record.status, Status::Completed { .. }));
}

/// Two calls to one entity at once, outside a section: both are answered, each its own.
#[test]
fn two_parallel_calls_to_one_entity_get_their_own_answers() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let out = run(client, twice, "twice", "t".to_string()).await.unwrap();
        assert_eq!(out, (1, 3));
    });
}

/// A lock request given up on a timeout while another section holds the entity: once
/// that section ends, the entity is not left locked for the one that gave up, and the
/// signal it sent after giving up runs.
#[test]
fn a_lock_given_up_on_a_timeout_behind_another_section_leaves_nothing_locked() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let holder = hold_locked(client, &store, "holder", "z").await;
        let out = run(client, lock_or_give_up, "quitter", "z".to_string())
            .await
            .unwrap();
        assert_eq!(out, "gave up");
        holder.raise_event("go", &()).await.unwrap();
        holder.wait(WAIT).await.unwrap();
        until_settled(&store, &["z"]).await;
        assert_eq!(state(client, "z").await.log, [7]);
    });
}

/// A call's output over the payload limit fails the call (the caller sees why); one
/// under it passes.
#[test]
fn a_call_output_over_the_payload_limit_fails_the_call() {
    let (_dir, store) = store();
    with_runtime(
        builder(store.clone()).max_payload_bytes(1_000),
        async |client| {
            let small = run(client, bulk_call, "small", ("b".to_string(), 100))
                .await
                .unwrap();
            assert_eq!(small, "100 bytes");
            let big = run(client, bulk_call, "big", ("b".to_string(), 5_000))
                .await
                .unwrap();
            assert!(
                big.starts_with("failed: ") && big.contains("max_payload_bytes"),
                "{big}"
            );
            until_settled(&store, &["b"]).await;
        },
    );
}

/// A lock given up on a timeout behind another section, then asked for again: once the
/// other section ends the second request is granted (the first passes without holding
/// it), and the call inside it runs.
#[test]
fn a_lock_given_up_then_asked_again_is_granted_once_the_holder_ends() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let holder = hold_locked(client, &store, "holder", "w").await;
        let again = client
            .start(lock_twice, "again", "w".to_string())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        holder.raise_event("go", &()).await.unwrap();
        assert_eq!(again.wait(WAIT).await.unwrap(), "gave up, then 10");
        until_settled(&store, &["w"]).await;
    });
}

/// A call input over the payload limit inside a section fails the orchestration, and
/// its entity is unlocked.
#[test]
fn a_call_input_over_the_payload_limit_fails_the_orchestration_and_unlocks() {
    let (_dir, store) = store();
    with_runtime(
        builder(store.clone()).max_payload_bytes(1_000),
        async |client| {
            let fits = run(client, measure_in_section, "fits", ("m".to_string(), 10)).await;
            assert_eq!(fits.unwrap(), 10);
            let over = run(client, measure_in_section, "over", ("m".to_string(), 5_000)).await;
            assert!(over.is_err(), "{over:?}");
            client.signal_entity(Ledger::note, "m", 1).await.unwrap();
            until_settled(&store, &["m"]).await;
            assert_eq!(state(client, "m").await.log, [1]);
        },
    );
}

/// A section over an entity type no worker has waits at it (the first of its set);
/// terminated, it holds up nothing meanwhile (its unlock waits at the other entity for
/// the request), and once a worker with that type comes the request passes through both
/// without leaving either locked.
#[test]
fn a_section_over_an_unregistered_entity_type_terminated_leaves_nothing_locked() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        // `@Elsewhere@e` sorts before `@Ledger@e`: the request waits at the first.
        let instance = client
            .start(lock_elsewhere, "far", "e".to_string())
            .await
            .unwrap();
        until("a record of `@Elsewhere@e`", || async {
            let record = store.instance("@Elsewhere@e").unwrap();
            record.map(drop).ok_or_else(|| "none".to_string())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(lock_owner(&store, "e"), None);
        instance.terminate("enough").await.unwrap();
        client.signal_entity(Ledger::note, "e", 3).await.unwrap();
        until_state(client, "e", |l: &Ledger| l.log == [3]).await;
    });
    with_runtime(
        builder(store.clone()).entity::<Elsewhere>(),
        async |_client| {
            until_settled(&store, &["e"]).await;
            let elsewhere = store.instance("@Elsewhere@e").unwrap().unwrap();
            assert_eq!(elsewhere.parent, None);
        },
    );
}

/// A caller of an entity whose stored state does not decode waits (the call stays in
/// the store, the orchestration running); once code that reads the state runs, the call
/// is answered.
#[test]
fn a_call_to_an_undecodable_state_waits_for_code_that_reads_it() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        client.signal_entity(Ledger::add, "u", 1).await.unwrap();
        until_state(client, "u", |l: &Ledger| l.balance == 1).await;
    });
    with_runtime(
        Runtime::builder(store.clone())
            .entity::<LedgerV2>()
            .orchestrator(add_five_v2),
        async |client| {
            let caller = client
                .start(add_five_v2, "stuck", "u".to_string())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let position = caller.position().await.unwrap().to_string();
            assert!(position.contains("a call of operation `add`"), "{position}");
            assert!(matches!(
                store.instance("stuck").unwrap().unwrap().status,
                Status::Running
            ));
        },
    );
    with_runtime(builder(store.clone()), async |client| {
        let out = client.instance(add_five, "stuck").wait(WAIT).await.unwrap();
        assert_eq!(out, 6);
        until_settled(&store, &["u"]).await;
    });
}

/// Transfers in opposite orders cut off mid-flight twice (the runtime dropped, as a
/// crash would), then run to the end: every transfer completes once, the balances add
/// up and nothing stays locked.
#[test]
fn transfers_cut_off_by_crashes_complete_once_and_add_up() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone()).start().await.unwrap();
        let client = runtime.client();
        client.signal_entity(Ledger::add, "ca", 100).await.unwrap();
        client.signal_entity(Ledger::add, "cb", 100).await.unwrap();
        for i in 0..16 {
            let (from, to) = if i % 2 == 0 {
                ("ca", "cb")
            } else {
                ("cb", "ca")
            };
            client
                .start(
                    transfer,
                    format!("c{i}"),
                    (from.to_string(), to.to_string(), i + 1),
                )
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Dropped without shutdown.
    });
    lifetime(async {
        let _runtime = builder(store.clone()).start().await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
    });
    with_runtime(builder(store.clone()), async |client| {
        for i in 0..16 {
            client
                .instance(transfer, format!("c{i}"))
                .wait(WAIT)
                .await
                .unwrap();
        }
        until_settled(&store, &["ca", "cb"]).await;
        assert_eq!(state(client, "ca").await.balance, 100 - 64 + 72);
        assert_eq!(state(client, "cb").await.balance, 100 + 64 - 72);
    });
}

/// On PostgreSQL, two workers: forty transfers over four entities no one made yet, in
/// every direction, started on both workers at once (so both make the entities' records
/// from orchestration turns), the workers cut off mid-flight once, then run to the end:
/// every transfer completes once, the balances add up, nothing stays locked or queued.
#[test]
fn on_postgres_transfers_over_fresh_entities_through_two_workers_and_a_crash() {
    let database = TestServer::shared().database();
    let store = PostgresStore::open(database.url()).unwrap();
    let worker = || postgres_worker(database.url(), Duration::from_secs(2), builder);
    let keys = ["k0", "k1", "k2", "k3"];
    let moves: Vec<(String, String, i64)> = (0..40)
        .map(|i: usize| {
            let from = keys[i % 4];
            let to = keys[(i / 4 + i + 1) % 4];
            (from.to_string(), to.to_string(), 1)
        })
        .filter(|(from, to, _)| from != to)
        .collect();
    lifetime(async {
        let a = worker().start().await.unwrap();
        let b = worker().start().await.unwrap();
        let (ca, cb) = (a.client(), b.client());
        for (i, m) in moves.iter().enumerate() {
            let client = if i % 2 == 0 { &ca } else { &cb };
            client
                .start(shift, format!("m{i}"), m.clone())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Both dropped without shutdown.
    });
    lifetime(async {
        let a = worker().start().await.unwrap();
        let b = worker().start().await.unwrap();
        let client = a.client();
        for i in 0..moves.len() {
            let id = format!("m{i}");
            let done = client.instance(shift, id.as_str()).wait(WAIT).await;
            assert!(done.is_ok(), "{id}: {done:?} {:?}", store.work_items());
        }
        until_settled(&store, &keys).await;
        let mut expected = std::collections::BTreeMap::<&str, i64>::new();
        for (from, to, n) in &moves {
            *expected.entry(from.as_str()).or_default() -= n;
            *expected.entry(to.as_str()).or_default() += n;
        }
        for key in keys {
            let got = client.entity_state::<Ledger>(key).await.unwrap();
            let balance = got.map(|l| l.balance);
            assert_eq!(balance, expected.get(key).copied(), "{key}");
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// A commit making instance `instance` with one message, work item `id`, waiting for it.
fn an_instance_with_a_message(instance: &str, id: WorkId) -> Commit {
    let record = InstanceRecord::pending("race".into(), 1, Vec::new(), 0, 1, None);
    let message = WorkItem::Message {
        instance: instance.to_string(),
        incarnation: 1,
        generation: None,
        event: Event::ResumeRequested,
    };
    Commit {
        instances: vec![(instance.to_string(), record)],
        enqueued: vec![(id, message)],
        ..Commit::default()
    }
}

/// Under `worker`'s lease, nothing unclaimed or released.
fn lease_of(worker: WorkerId) -> Option<CommitLease> {
    Some(CommitLease {
        worker,
        unclaimed: Vec::new(),
        released: Vec::new(),
    })
}

/// Runs `there` on a thread of its own and `here` on this one, let go together, `here`
/// after `delay`; what `there` gave.
fn at_once<T: Send + 'static>(
    delay: Duration,
    there: impl FnOnce() -> T + Send + 'static,
    here: impl FnOnce(),
) -> T {
    let start = Arc::new(Barrier::new(2));
    let thread = {
        let start = start.clone();
        std::thread::spawn(move || {
            start.wait();
            there()
        })
    };
    start.wait();
    std::thread::sleep(delay);
    here();
    thread.join().unwrap()
}

/// Fails with the rounds in `lost`, if any.
fn assert_none_lost(lost: Vec<u64>) {
    assert_eq!(
        lost,
        Vec::<u64>::new(),
        "rounds whose message no worker can claim"
    );
}

/// On PostgreSQL, a worker's lease ends (`leave`, as a runtime dropped without a
/// shutdown does) while a commit of that worker is being written: whatever the commit
/// wrote (a message for an instance the worker held) is released with the rest, so
/// another worker claims it. Before, `leave` released in the snapshot of its one
/// statement, taken before the commit's rows were visible, and deleted the lease row
/// once the commit ended: the message stayed held by a worker that no longer existed,
/// never claimed (an entity's unlock lost so left it locked for good).
#[test]
fn on_postgres_a_commit_written_while_its_worker_leaves_is_claimed_by_another() {
    let database = TestServer::shared().database();
    let writer = PostgresStore::open(database.url()).unwrap();
    let leaver = PostgresStore::open(database.url()).unwrap();
    let mut lost = Vec::new();
    for round in 0..60_u64 {
        let worker = writer.join(Duration::from_secs(60)).unwrap();
        let instance = format!("race-{round}");
        let id = writer.reserve_work_ids(1).unwrap();
        let commit = Commit {
            lease: lease_of(worker),
            ..an_instance_with_a_message(&instance, id)
        };
        let committing = {
            let writer = writer.clone();
            move || writer.commit(&[commit])
        };
        let delay = Duration::from_micros(200 * (round % 10));
        let written = at_once(delay, committing, || leaver.leave(worker).unwrap()).is_ok();
        let other = leaver.join(Duration::from_secs(60)).unwrap();
        let claim = leaver.claim(other, &ClaimFilter::default()).unwrap();
        let claimed = claim.items.iter().any(|(item, _)| *item == id);
        if written && !claimed {
            lost.push(round);
        }
        leaver.leave(other).unwrap();
    }
    assert_none_lost(lost);
}

/// On PostgreSQL, a worker's lease ends while a claim of that worker runs (a runtime
/// dropped without a shutdown leaves while its claim loop's last claim is still being
/// written): what the claim took is released with the rest, or the claim is refused;
/// either way another worker claims it. Before, a claim that had read its lease live
/// went on taking instances and messages after `leave` had released the worker's
/// holdings: they stayed held by a worker that no longer existed, never claimed again
/// (two entities and every message sent to them stuck so).
#[test]
fn on_postgres_a_claim_running_while_its_worker_leaves_leaves_nothing_held() {
    let database = TestServer::shared().database();
    let claimer = PostgresStore::open(database.url()).unwrap();
    let leaver = PostgresStore::open(database.url()).unwrap();
    let mut lost = Vec::new();
    for round in 0..60_u64 {
        let instance = format!("claimed-{round}");
        let id = leaver.reserve_work_ids(1).unwrap();
        leaver
            .commit(&[an_instance_with_a_message(&instance, id)])
            .unwrap();
        let worker = claimer.join(Duration::from_secs(60)).unwrap();
        let claiming = {
            let claimer = claimer.clone();
            move || claimer.claim(worker, &ClaimFilter::default())
        };
        let delay = Duration::from_micros(300 * (round % 10));
        let _ = at_once(delay, claiming, || leaver.leave(worker).unwrap());
        let other = leaver.join(Duration::from_secs(60)).unwrap();
        let claim = leaver.claim(other, &ClaimFilter::default()).unwrap();
        if !claim.items.iter().any(|(item, _)| *item == id) {
            lost.push(round);
        }
        // Removes the message, so that the next rounds' claims meet only their own.
        let done = Commit {
            dequeued: vec![id],
            instances_removed: vec![instance],
            lease: lease_of(other),
            ..Commit::default()
        };
        leaver.commit(&[done]).unwrap();
        leaver.leave(other).unwrap();
    }
    assert_none_lost(lost);
}

/// A call of generation 0 answered after the orchestration continued as new, whose
/// generation 1 calls the same entity at the same step number: the late answer is not
/// taken for the new call's (it is dropped), and the new call gets its own.
#[test]
fn an_answer_to_an_earlier_generation_is_not_taken_by_the_next() {
    let (_dir, store) = store();
    with_runtime(
        Runtime::builder(store.clone()).orchestrator(generations),
        async |client| {
            client.start(generations, "gen", 0).await.unwrap();
            until("generation 1 of `gen` calling its entity", || async {
                let record = store.instance("gen").unwrap().unwrap();
                let history = store.history("gen").unwrap();
                let called =
                    (history.iter()).any(|e| matches!(e, Event::EntityCalled { seq: 0, .. }));
                if record.generation == 1 && called {
                    Ok(())
                } else {
                    Err(format!("{history:?}"))
                }
            })
            .await;
        },
    );
    with_runtime(builder(store.clone()), async |client| {
        let out = client
            .instance(generations, "gen")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(out, 7);
        until_settled(&store, &["g"]).await;
    });
}

/// An orchestration holding a section whose code changed (its lock request no longer
/// matches its history) stalls, holding the entity; terminated, it unlocks it.
#[test]
fn a_stalled_section_holds_its_entity_until_terminated() {
    let (_dir, store) = store();
    with_runtime(
        Runtime::builder(store.clone())
            .entity::<Ledger>()
            .orchestrator(section_code_v1),
        async |client| {
            client.start(section_code_v1, "changed", ()).await.unwrap();
            until_locked_by(&store, "s", "changed").await;
        },
    );
    with_runtime(
        Runtime::builder(store.clone())
            .entity::<Ledger>()
            .orchestrator(section_code_v2),
        async |client| {
            let instance = client.instance(section_code_v2, "changed");
            instance.raise_event("go", &()).await.unwrap();
            until("`changed` stalled", || async {
                let status = store.instance("changed").unwrap().unwrap().status;
                if matches!(status, Status::Stalled { .. }) {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            })
            .await;
            assert_eq!(lock_owner(&store, "s").as_deref(), Some("changed"));
            instance.terminate("code changed").await.unwrap();
            client.signal_entity(Ledger::note, "s", 4).await.unwrap();
            until_state(client, "s", |l: &Ledger| l.log == [4]).await;
            assert_eq!(lock_owner(&store, "s"), None);
        },
    );
}

/// On PostgreSQL, two workers: twelve sections over overlapping pairs of three entities,
/// half of them terminated (holding, or still acquiring), the other half let go, while a
/// client signals every entity; the workers cut off once in the middle. In the end every
/// entity is unlocked, nothing is queued, and each entity ran every signal once, in the
/// order sent.
#[test]
fn on_postgres_sections_terminated_or_let_go_under_signals_and_a_crash() {
    let database = TestServer::shared().database();
    let store = PostgresStore::open(database.url()).unwrap();
    let worker = || postgres_worker(database.url(), Duration::from_secs(2), builder);
    let keys = ["p0", "p1", "p2"];
    let sets: Vec<Vec<String>> = (0..12)
        .map(|i: usize| {
            vec![
                keys[i % 3].to_string(),
                keys[(i + 1 + i / 3) % 3].to_string(),
            ]
        })
        .collect();
    lifetime(async {
        let a = worker().start().await.unwrap();
        let b = worker().start().await.unwrap();
        let (ca, cb) = (a.client(), b.client());
        for (i, set) in sets.iter().enumerate() {
            let client = if i % 2 == 0 { &ca } else { &cb };
            client
                .start(hold, format!("s{i}"), set.clone())
                .await
                .unwrap();
            for key in keys {
                ca.signal_entity(Ledger::note, key, i as i64).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in (0..12).step_by(2) {
            cb.terminate(&format!("s{i}"), "enough").await.unwrap();
        }
        // Dropped without shutdown.
    });
    lifetime(async {
        let a = worker().start().await.unwrap();
        let b = worker().start().await.unwrap();
        let client = b.client();
        for i in (1..12).step_by(2) {
            client
                .raise_event(&format!("s{i}"), "go", &())
                .await
                .unwrap();
        }
        for (i, set) in sets.iter().enumerate() {
            if i % 2 == 1 {
                let done = client.instance(hold, format!("s{i}")).wait(WAIT).await;
                assert!(done.is_ok(), "s{i} {set:?}: {done:?}");
            }
        }
        until_settled(&store, &keys).await;
        for key in keys {
            let log = a
                .client()
                .entity_state::<Ledger>(key)
                .await
                .unwrap()
                .unwrap()
                .log;
            assert_eq!(log, (0..12).collect::<Vec<i64>>(), "{key}");
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// A call whose input the entity's operation cannot decode, and a call of an operation
/// the entity does not have, fail typed; the entity goes on.
#[test]
fn calls_the_entity_cannot_run_fail_typed() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let out = run(client, mismatched, "mismatched", "mm".to_string())
            .await
            .unwrap();
        assert_eq!(out, (true, true));
        until_settled(&store, &["mm"]).await;
    });
}

/// Sections over one entity one after the other, two calls at once in each: each runs
/// inside its own section, in order.
#[test]
fn sections_in_a_row_with_parallel_calls_run_in_order() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        let out = run(client, sections_in_a_row, "rows", "r".to_string())
            .await
            .unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5]);
        until_settled(&store, &["r"]).await;
    });
}

/// A scheduled signal from an orchestration that falls due while another section holds
/// its entity waits for the section, and then runs once; across a restart too.
#[test]
fn a_scheduled_signal_due_during_a_section_runs_once_after_it() {
    let (_dir, store) = store();
    with_runtime(builder(store.clone()), async |client| {
        client
            .start(hold, "holder", vec!["l".to_string()])
            .await
            .unwrap();
        until_locked_by(&store, "l", "holder").await;
        run(client, note_later, "later", "l".to_string())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(state(client, "l").await.log, Vec::<i64>::new());
    });
    with_runtime(builder(store.clone()), async |client| {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(state(client, "l").await.log, Vec::<i64>::new());
        let holder = client.instance(hold, "holder");
        holder.raise_event("go", &()).await.unwrap();
        assert_eq!(holder.wait(WAIT).await.unwrap(), Vec::<i64>::new());
        until_settled(&store, &["l"]).await;
        assert_eq!(state(client, "l").await.log, [99]);
    });
}

/// On PostgreSQL, an orchestration signals an entity on one worker, then (taken over)
/// on another whose block of work ids is lower; the entity's type is on neither, so both
/// wait in the store. Once a worker with it claims them, they run in the order sent.
#[test]
fn on_postgres_an_orchestrations_signals_run_in_order_when_it_moved_between_workers() {
    let database = TestServer::shared().database();
    let store = PostgresStore::open(database.url()).unwrap();
    let worker = || {
        Runtime::builder(PostgresStore::open(database.url()).unwrap())
            .orchestrator(two_signals)
            .lease(Duration::from_secs(2))
    };
    lifetime(async {
        // `low` reserves its ids first: its block is below `high`'s.
        let low = worker().start().await.unwrap();
        let high = worker().start().await.unwrap();
        high.client()
            .start(two_signals, "mover", "ord".to_string())
            .await
            .unwrap();
        until_queued(&store, "ord", |e| {
            matches!(e, Event::EntityOperation { .. })
        })
        .await;
        high.shutdown().await;
        low.client()
            .raise_event("mover", "next", &())
            .await
            .unwrap();
        low.client()
            .instance(two_signals, "mover")
            .wait(WAIT)
            .await
            .unwrap();
        low.shutdown().await;
    });
    with_runtime(
        builder(PostgresStore::open(database.url()).unwrap()).lease(Duration::from_secs(2)),
        async |client| {
            until_settled(&store, &["ord"]).await;
            let log = state(client, "ord").await.log;
            assert_eq!(log, [1, 2], "the signals ran out of the order sent");
        },
    );
}
