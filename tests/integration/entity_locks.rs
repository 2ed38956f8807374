//! Entities answer calls and hold locks (issue 14, step 3, the entity's side): the
//! messages an orchestration sends (`EntityCall`, `EntityLock`, `EntityUnlock`) are
//! committed here straight to the store, from a caller that is a real instance of an
//! orchestrator no runtime here has, so that what the entities send it (answers, grants)
//! stays queued in the store, where the tests read it. Restarts on the same store show
//! what is durable. Also: a stored state that does not decode holds back everything sent
//! to its entity after it, a client's delete included.

use std::time::{Duration, Instant};

use durable_core::{Client, Runtime, entity};
use durable_store::Store;
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until `key`'s state of type `E` satisfies `done`, and returns it.
async fn until<E>(client: &Client, key: &str, done: impl Fn(&E) -> bool) -> E
where
    E: durable_core::Entity + std::fmt::Debug,
{
    let start = Instant::now();
    loop {
        if let Some(state) = client.entity_state::<E>(key).await.unwrap()
            && done(&state)
        {
            return state;
        }
        assert!(
            start.elapsed() < WAIT,
            "entity `{key}` never got there: {:?}",
            client.entity_state::<E>(key).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `Counter` as first deployed.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct CounterV1 {
    n: u64,
}

#[entity(name = "Counter")]
impl CounterV1 {
    pub fn bump(&mut self) {
        self.n += 1;
    }
}

/// `Counter` changed incompatibly: the stored state no longer decodes.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct CounterV2 {
    n: String,
}

#[entity(name = "Counter")]
impl CounterV2 {
    pub fn bump(&mut self) {
        self.n.push('x');
    }
}

/// A bump waits for code that reads the state; the delete and the bump a client sends
/// after it wait behind it (they used to run at once, the delete resetting the state the
/// waiting bump then ran on after a restart, out of its sender's order).
#[test]
fn a_state_that_does_not_decode_holds_back_what_is_sent_after_it() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<CounterV1>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .signal_entity(CounterV1::bump, "c", ())
            .await
            .unwrap();
        until(&client, "c", |c: &CounterV1| c.n == 1).await;
        runtime.shutdown().await;
    });
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<CounterV2>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .signal_entity(CounterV2::bump, "c", ())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(client.delete_entity::<CounterV2>("c").await.unwrap());
        client
            .signal_entity(CounterV2::bump, "c", ())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let read = client.entity_state::<CounterV2>("c").await;
        assert!(
            matches!(
                read,
                Err(durable_core::Error::UndecodableEntityState { .. })
            ),
            "the delete ran before the bump sent ahead of it: {read:?}"
        );
        runtime.shutdown().await;
    });
    // Code that reads the state: bump (2), delete, bump (1), in the order they were sent.
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<CounterV1>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let start = Instant::now();
        while !store.work_items().unwrap().is_empty() {
            assert!(start.elapsed() < WAIT, "{:?}", store.work_items());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = client.entity_state::<CounterV1>("c").await.unwrap();
        assert_eq!(c, Some(CounterV1 { n: 1 }));
        runtime.shutdown().await;
    });
}
