//! Entity types, runtime builders and waiting helpers shared by the entity tests
//! (`entities_runtime`, `entity_locks`, `entity_review`, `entity_review2`,
//! `entity_client`, `orchestration_entities`). Every wait here polls for at most `WAIT`
//! and fails naming what it awaited and what it saw last.

pub mod plain;

use std::future::Future;
use std::time::{Duration, Instant, UNIX_EPOCH};

use durable_core::record::{Event, ParentLink, WorkItem};
use durable_core::{
    Client, Entity, EntityContext, Error, Orchestrator, Runtime, RuntimeBuilder, Store, entity,
};
use durable_store::{FjallStore, PostgresStore};
use serde::{Deserialize, Serialize};

use crate::common::lifetime;

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` every 10 ms until it gives `Ok`, and returns what it gave. After `WAIT`
/// fails, naming `what` was awaited and the last `Err` (what was seen instead).
pub async fn until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    poll(what, Duration::from_millis(10), check).await
}

/// `until`, polling every `every`.
async fn poll<T, F, Fut>(what: &str, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(done) => return done,
            Err(seen) => assert!(
                start.elapsed() < WAIT,
                "waited {WAIT:?} for {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until entity `key` of type `E` has a state that satisfies `done`, and returns it.
/// Polls every 20 ms, as the tests' own copies did: a read of an entity's state is a
/// store read each time.
pub async fn until_state<E>(client: &Client, key: &str, done: impl Fn(&E) -> bool) -> E
where
    E: Entity + std::fmt::Debug,
{
    let what = format!(
        "the state of entity `{key}` ({})",
        std::any::type_name::<E>()
    );
    poll(&what, Duration::from_millis(20), || async {
        match client.entity_state::<E>(key).await.unwrap() {
            Some(state) if done(&state) => Ok(state),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Runs one process lifetime (`common::lifetime`) with a runtime started from `builder`:
/// `body` with its client, then a clean shutdown; what `body` gives.
pub fn with_runtime<T>(builder: RuntimeBuilder, body: impl AsyncFnOnce(&Client) -> T) -> T {
    lifetime(async {
        let runtime = builder.start().await.unwrap();
        let out = body(&runtime.client()).await;
        runtime.shutdown().await;
        out
    })
}

/// Starts `orchestrator` as instance `id` and waits (at most `WAIT`) for its output.
///
/// # Errors
///
/// What `Instance::wait` gives: the orchestration failed, or did not end in time.
///
/// # Panics
///
/// If the start is refused.
pub async fn run<O: Orchestrator>(
    client: &Client,
    orchestrator: O,
    id: impl Into<String>,
    input: O::Input,
) -> Result<O::Output, Error> {
    let instance = client.start(orchestrator, id, input).await.unwrap();
    instance.wait(WAIT).await
}

/// The owner of the lock entity `id` (an instance id, `@Type@key`) holds, as its record
/// says; `None` if it is unlocked or has no record yet.
pub fn lock_owner(store: &(impl Store + ?Sized), id: &str) -> Option<ParentLink> {
    store.instance(id).unwrap().and_then(|r| r.parent)
}

/// Waits until the store holds no work item and none of `entities` (instance ids) is
/// locked.
pub async fn until_settled<S: AsRef<str>>(store: &(impl Store + ?Sized), entities: &[S]) {
    until("no work item and no entity locked", || async {
        let items = store.work_items().unwrap();
        let owners: Vec<_> = entities
            .iter()
            .map(|e| lock_owner(store, e.as_ref()))
            .collect();
        if items.is_empty() && owners.iter().all(Option::is_none) {
            Ok(())
        } else {
            Err(format!("{items:?} {owners:?}"))
        }
    })
    .await;
}

/// Waits until entity `id`'s lock is held by instance `owner`.
pub async fn until_locked_by(store: &(impl Store + ?Sized), id: &str, owner: &str) {
    until(&format!("`{id}` locked by `{owner}`"), || async {
        match lock_owner(store, id) {
            Some(link) if link.instance == owner => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Waits until the messages waiting in the store for instance `id` include one `found`
/// picks.
pub async fn until_queued(store: &(impl Store + ?Sized), id: &str, found: impl Fn(&Event) -> bool) {
    until(&format!("a message for `{id}`"), || async {
        let items = store.work_items().unwrap();
        let queued = items.iter().any(|(_, item)| {
            matches!(item, WorkItem::Message { instance, event, .. }
                if instance == id && found(event))
        });
        if queued {
            Ok(())
        } else {
            Err(format!("{items:?}"))
        }
    })
    .await;
}

/// Waits until the store holds no work item.
pub async fn until_no_work_items(store: &(impl Store + ?Sized)) {
    until("no work item", || async {
        let items = store.work_items().unwrap();
        if items.is_empty() {
            Ok(())
        } else {
            Err(format!("{items:?}"))
        }
    })
    .await;
}

/// A builder over `store` with `Account` registered.
pub fn account_runtime(store: impl Store) -> RuntimeBuilder {
    Runtime::builder(store).entity::<Account>()
}

/// A worker on the PostgreSQL database at `url`: `build` over a store of its own, with
/// leases of `lease`.
pub fn postgres_worker(
    url: &str,
    lease: Duration,
    build: impl FnOnce(PostgresStore) -> RuntimeBuilder,
) -> RuntimeBuilder {
    build(PostgresStore::open(url).unwrap()).lease(lease)
}

/// A bank account that counts the operations that changed it.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub balance: i64,
    /// How many operations changed the state.
    pub applied: u64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
        self.applied += 1;
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {} < {amount}", self.balance));
        }
        self.balance -= amount;
        self.applied += 1;
        Ok(self.balance)
    }

    /// Moves `amount` to account `to` by a signal, or nothing if the funds are short.
    pub fn transfer(
        &mut self,
        ctx: &mut EntityContext,
        (to, amount): (String, i64),
    ) -> Result<(), String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {} < {amount}", self.balance));
        }
        self.balance -= amount;
        self.applied += 1;
        ctx.signal(to, Account::deposit, amount);
        Ok(())
    }

    /// Deposits `amount` to itself at `at_secs` (seconds since the Unix epoch).
    pub fn pay_later(&mut self, ctx: &mut EntityContext, (amount, at_secs): (i64, u64)) {
        let me = ctx.id().clone();
        let at = UNIX_EPOCH + Duration::from_secs(at_secs);
        ctx.signal_at(&me, Account::deposit, amount, at);
    }

    /// Changes the state, then panics: the change must not stick.
    pub fn explode(&mut self) {
        self.balance = -1_000_000;
        panic!("boom");
    }

    pub fn balance(&self) -> i64 {
        self.balance
    }
}

/// Signals a deposit of `amount` to account `key`.
pub async fn deposit(client: &Client, key: &str, amount: i64) {
    client
        .signal_entity(Account::deposit, key, amount)
        .await
        .unwrap();
}

/// Leaves counter `key` in `store` as `CounterV1` writes it (`n` is 1), a state
/// `CounterV2` cannot decode; in a process lifetime of its own.
pub fn counter_stored_by_v1(store: &FjallStore, key: &str) {
    with_runtime(
        Runtime::builder(store.clone()).entity::<CounterV1>(),
        async |client| {
            client
                .signal_entity(CounterV1::bump, key, ())
                .await
                .unwrap();
            until_state(client, key, |c: &CounterV1| c.n == 1).await;
        },
    );
}

/// Signals `CounterV2::bump` to counter `key`.
pub async fn bump_v2(client: &Client, key: &str) {
    client
        .signal_entity(CounterV2::bump, key, ())
        .await
        .unwrap();
}

/// Fails unless counter `key`'s stored state reads as undecodable through `CounterV2`;
/// `why` says what a state that did decode would mean.
pub async fn assert_undecodable_as_v2(client: &Client, key: &str, why: &str) {
    let read = client.entity_state::<CounterV2>(key).await;
    assert!(
        matches!(read, Err(Error::UndecodableEntityState { .. })),
        "{why}: {read:?}"
    );
}

/// `Counter` as first deployed.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterV1 {
    pub n: u64,
}

#[entity(name = "Counter")]
impl CounterV1 {
    pub fn bump(&mut self) {
        self.n += 1;
    }
}

/// `Counter` changed incompatibly: the stored state no longer decodes.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterV2 {
    pub n: String,
}

#[entity(name = "Counter")]
impl CounterV2 {
    pub fn bump(&mut self) {
        self.n.push('x');
    }
}
