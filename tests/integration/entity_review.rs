//! Review of the entity runtime (issue 14): creation races, odd keys, signals to an
//! entity type the runtime does not have, scheduled signals across a restart, a state
//! that no longer decodes, and two PostgreSQL workers creating entities from turns.

use std::time::{Duration, Instant, UNIX_EPOCH};

use durable_core::{Client, EntityContext, ManualClock, Runtime, entity};
use durable_store::{PostgresStore, Store, TestServer};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};
use crate::entity_support::{
    CounterV1, CounterV2, WAIT, assert_undecodable_as_v2, bump_v2, counter_stored_by_v1,
    until_state, with_runtime,
};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    n: u64,
    /// The inputs of `add`, in the order they ran.
    seen: Vec<u64>,
}

#[entity]
impl Tally {
    pub fn add(&mut self, x: u64) {
        self.n += 1;
        self.seen.push(x);
    }

    /// Signals `add(x)` to each of `keys` (made by the signal if new).
    pub fn fan_out(&mut self, ctx: &mut EntityContext, (keys, x): (Vec<String>, u64)) {
        for key in keys {
            ctx.signal(key, Tally::add, x);
        }
    }

    /// Signals `Other::bump` to `key`.
    pub fn poke_other(&mut self, ctx: &mut EntityContext, key: String) {
        self.n += 1;
        ctx.signal(key, Other::bump, ());
    }

    /// Schedules `add(x)` to itself at `at_secs` (seconds since the Unix epoch).
    pub fn add_at(&mut self, ctx: &mut EntityContext, (x, at_secs): (u64, u64)) {
        let me = ctx.id().clone();
        ctx.signal_at(
            &me,
            Tally::add,
            x,
            UNIX_EPOCH + Duration::from_secs(at_secs),
        );
    }
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Other {
    n: u64,
}

#[entity]
impl Other {
    pub fn bump(&mut self) {
        self.n += 1;
    }
}

#[test]
fn odd_keys_are_entities_of_their_own() {
    let (_dir, store) = store();
    let keys = [
        "",
        "@",
        "a@b",
        "@Tally@x",
        " spaced ",
        "ünï-cödé ✓",
        "x/y\\z",
        "%00",
    ];
    with_runtime(
        Runtime::builder(store.clone()).entity::<Tally>(),
        async |client| {
            for (i, key) in keys.iter().enumerate() {
                for _ in 0..=i {
                    client
                        .signal_entity(Tally::add, *key, i as u64)
                        .await
                        .unwrap();
                }
            }
            for (i, key) in keys.iter().enumerate() {
                let state: Tally = until_state(client, key, |t: &Tally| t.n as usize > i).await;
                assert_eq!(state.seen, vec![i as u64; i + 1], "key {key:?}");
            }
            // A key with a control character is refused, as an orchestration id is.
            let refused = client.signal_entity(Tally::add, "a\nb", 1).await;
            assert!(refused.is_err(), "{refused:?}");
        },
    );
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn a_signal_from_a_turn_to_an_entity_type_not_registered_waits_for_a_runtime_with_it() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<Tally>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .signal_entity(Tally::poke_other, "p", "o".to_string())
            .await
            .unwrap();
        until_state(&client, "p", |t: &Tally| t.n == 1).await;
        // The runtime does not spin on the message it cannot run.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = runtime.commit_stats().commits;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runtime.commit_stats().commits, before, "commits while idle");
        runtime.shutdown().await;
    });
    with_runtime(
        Runtime::builder(store.clone())
            .entity::<Tally>()
            .entity::<Other>(),
        async |client| {
            let other: Other = until_state(client, "o", |o: &Other| o.n >= 1).await;
            assert_eq!(other, Other { n: 1 });
        },
    );
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn a_scheduled_signal_runs_once_across_restarts_and_not_before_its_time() {
    let (_dir, store) = store();
    let at = 2_000;
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
    with_runtime(
        Runtime::builder(store.clone())
            .entity::<Tally>()
            .clock(clock.clone()),
        async |client| {
            client
                .signal_entity(Tally::add_at, "s", (7, at))
                .await
                .unwrap();
            client.signal_entity(Tally::add, "s", 1).await.unwrap();
            until_state(client, "s", |t: &Tally| t.n == 1).await;
        },
    );
    // Restarted before its time: it still waits.
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<Tally>()
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client.signal_entity(Tally::add, "s", 2).await.unwrap();
        until_state(&client, "s", |t: &Tally| t.n == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = client.entity_state::<Tally>("s").await.unwrap().unwrap();
        assert_eq!(s.seen, vec![1, 2], "a scheduled signal ran early");
        // Gone abruptly, the signal still pending.
    });
    // Restarted after its time: it runs, once.
    clock.advance(Duration::from_secs(5_000));
    with_runtime(
        Runtime::builder(store.clone())
            .entity::<Tally>()
            .clock(clock.clone()),
        async |client| {
            until_state(client, "s", |t: &Tally| t.n == 3).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let s = client.entity_state::<Tally>("s").await.unwrap().unwrap();
            assert_eq!(s.seen, vec![1, 2, 7]);
        },
    );
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn operations_on_a_state_that_no_longer_decodes_wait_for_code_that_reads_it() {
    let (_dir, store) = store();
    counter_stored_by_v1(&store, "c");
    with_runtime(
        Runtime::builder(store.clone()).entity::<CounterV2>(),
        async |client| {
            for _ in 0..3 {
                bump_v2(client, "c").await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let why = "the bumps ran on a state that does not decode";
            assert_undecodable_as_v2(client, "c", why).await;
        },
    );
    // Code that reads the state again: the three operations run, none lost.
    with_runtime(
        Runtime::builder(store.clone()).entity::<CounterV1>(),
        async |client| {
            until_state(client, "c", |c: &CounterV1| c.n >= 4).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let c = client.entity_state::<CounterV1>("c").await.unwrap();
            assert_eq!(c, Some(CounterV1 { n: 4 }));
        },
    );
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn fjall_many_senders_and_turns_create_many_new_entities_at_once() {
    let (_dir, store) = store();
    with_runtime(
        Runtime::builder(store.clone()).entity::<Tally>(),
        async |client| {
            creation_storm(client, client, "f").await;
        },
    );
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn on_postgres_two_workers_create_many_new_entities_from_clients_and_turns() {
    let database = TestServer::shared().database();
    lifetime(async {
        let builder = || {
            Runtime::builder(PostgresStore::open(database.url()).unwrap())
                .entity::<Tally>()
                .lease(Duration::from_secs(5))
        };
        let a = builder().start().await.unwrap();
        let b = builder().start().await.unwrap();
        creation_storm(&a.client(), &b.client(), "p").await;
        a.shutdown().await;
        b.shutdown().await;
    });
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(store.work_items().unwrap(), vec![]);
}

/// From both clients at once: `SENDERS` tasks each signal `add` to every one of `KEYS`
/// new entities, and `fan_out` turns signal `add` to all of them too; then every
/// entity counts every operation once, in each sender's order.
async fn creation_storm(a: &Client, b: &Client, prefix: &str) {
    const KEYS: usize = 20;
    const SENDERS: u64 = 8;
    const FANS: u64 = 8;
    let keys: Vec<String> = (0..KEYS).map(|k| format!("{prefix}{k}")).collect();
    let mut sends = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let client = if sender % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        let keys = keys.clone();
        sends.spawn(async move {
            for (step, key) in keys.iter().enumerate() {
                let x = sender * 1_000 + step as u64;
                client.signal_entity(Tally::add, key.as_str(), x).await?;
                client
                    .signal_entity(Tally::add, key.as_str(), x + 500)
                    .await?;
            }
            Ok::<_, durable_core::Error>(())
        });
    }
    for fan in 0..FANS {
        let client = if fan % 2 == 0 { b.clone() } else { a.clone() };
        let keys = keys.clone();
        let x = 100_000 + fan;
        sends.spawn(async move {
            (client.signal_entity(Tally::fan_out, format!("fan{fan}").as_str(), (keys, x))).await
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().unwrap();
    }
    let want = (2 * SENDERS + FANS) as usize;
    for key in &keys {
        let t: Tally = until_state(a, key, |t: &Tally| t.n as usize >= want).await;
        assert_eq!(t.n as usize, want, "{key}: {t:?}");
        for sender in 0..SENDERS {
            let mine: Vec<u64> = (t.seen.iter().copied())
                .filter(|x| *x < 100_000 && x / 1_000 == sender)
                .collect();
            assert_eq!(mine.len(), 2, "{key}: {t:?}");
            assert_eq!(mine[0] + 500, mine[1], "{key}: out of order: {t:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for key in &keys {
        let t: Tally = until_state(a, key, |_: &Tally| true).await;
        assert_eq!(t.n as usize, want, "{key} applied more than once: {t:?}");
    }
}

#[test]
fn signals_cut_off_by_a_crash_run_once_each_after_the_restart() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let (_dir, store) = store();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let attempted = Arc::new(AtomicU64::new(0));
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<Tally>()
            .start()
            .await
            .unwrap();
        for sender in 0..4u64 {
            let client = runtime.client();
            let (acknowledged, attempted) = (acknowledged.clone(), attempted.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    attempted.fetch_add(1, Ordering::SeqCst);
                    let x = sender * 1_000_000 + i;
                    if client.signal_entity(Tally::add, "k", x).await.is_ok() {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The process ends here, senders and turns mid-flight.
    });
    let (acknowledged, attempted) = (
        acknowledged.load(Ordering::SeqCst),
        attempted.load(Ordering::SeqCst),
    );
    assert!(acknowledged > 10, "only {acknowledged} signals sent");
    with_runtime(
        Runtime::builder(store.clone()).entity::<Tally>(),
        async |client| {
            until_state(client, "k", |t: &Tally| t.n >= acknowledged).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let k: Tally = until_state(client, "k", |_: &Tally| true).await;
            assert!(k.n <= attempted, "{} applied of {attempted} sent", k.n);
            for sender in 0..4u64 {
                let mine: Vec<u64> = (k.seen.iter().copied())
                    .filter(|x| x / 1_000_000 == sender)
                    .collect();
                let mut sorted = mine.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(mine, sorted, "sender {sender}: out of order or twice");
            }
        },
    );
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn a_turn_signalling_an_id_a_client_may_not_use_does_not_stall_its_entity() {
    let (_dir, store) = store();
    with_runtime(
        Runtime::builder(store.clone()).entity::<Tally>(),
        async |client| {
            let long = "k".repeat(400);
            for key in ["a\nb", long.as_str()] {
                client
                    .signal_entity(Tally::fan_out, "bad", (vec![key.to_string()], 1))
                    .await
                    .unwrap();
            }
            client.signal_entity(Tally::add, "bad", 9).await.unwrap();
            // The ids are the client's to refuse (control character; over 256 bytes), not the
            // turn's: its entity goes on.
            let bad: Tally = until_state(client, "bad", |t: &Tally| t.n == 1).await;
            assert_eq!(bad.seen, vec![9]);
        },
    );
}

#[test]
fn on_postgres_a_worker_killed_mid_flight_loses_no_acknowledged_signal_and_repeats_none() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let database = TestServer::shared().database();
    let url = database.url().to_owned();
    let builder = move || {
        Runtime::builder(PostgresStore::open(&url).unwrap())
            .entity::<Tally>()
            .lease(Duration::from_secs(2))
    };
    let acknowledged = Arc::new(AtomicU64::new(0));
    let attempted = Arc::new(AtomicU64::new(0));
    // Worker A in a process of its own, which ends abruptly with its senders mid-flight.
    let killed = {
        let (builder, acknowledged, attempted) =
            (builder.clone(), acknowledged.clone(), attempted.clone());
        std::thread::spawn(move || {
            lifetime(async {
                let a = builder().start().await.unwrap();
                for sender in 0..4u64 {
                    let client = a.client();
                    let (acknowledged, attempted) = (acknowledged.clone(), attempted.clone());
                    tokio::spawn(async move {
                        for i in 0.. {
                            attempted.fetch_add(1, Ordering::SeqCst);
                            let key = format!("w{}", i % 3);
                            let x = sender * 1_000_000 + i;
                            if client
                                .signal_entity(Tally::add, key.as_str(), x)
                                .await
                                .is_ok()
                            {
                                acknowledged.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    });
                }
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            })
        })
    };
    lifetime(async {
        let b = builder().start().await.unwrap();
        killed.join().unwrap();
        let (acknowledged, attempted) = (
            acknowledged.load(Ordering::SeqCst),
            attempted.load(Ordering::SeqCst),
        );
        assert!(acknowledged > 10, "only {acknowledged} signals sent");
        let client = b.client();
        let start = Instant::now();
        while states(&client).await.iter().map(|t| t.n).sum::<u64>() < acknowledged {
            assert!(start.elapsed() < WAIT, "not all {acknowledged} applied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let total = states(&client).await;
        let n: u64 = total.iter().map(|t| t.n).sum();
        assert!(n <= attempted, "{n} applied of {attempted} sent");
        for t in &total {
            let mut sorted = t.seen.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), t.seen.len(), "an operation applied twice");
        }
        b.shutdown().await;
    });
}

/// The states of `w0`, `w1` and `w2`.
async fn states(client: &Client) -> Vec<Tally> {
    let mut states = Vec::new();
    for k in 0..3 {
        let key = format!("w{k}");
        let state = client.entity_state::<Tally>(key.as_str()).await.unwrap();
        states.push(state.unwrap_or_default());
    }
    states
}
