//! `entity` (issue 14): signals to entities, every turn durable.
//!
//! - `one_entity`: N signals (default 10,000) to one entity, sent by the client all at
//!   once (`Client::signal_entity`, each call in a task of its own, as N callers would).
//! - `spread`: 10 × N signals (default 100,000) spread over N entities (default 10,000),
//!   sent the same way, signal `i` to entity `i % N`.
//!
//! Each clock runs from the first signal sent until the effect of every operation is
//! committed: the bench reads the entities' states back (`Client::entity_state`) until
//! each holds every signal it was sent. A `Counter` counts its operations and sums their
//! inputs (signal `i` carries `i`), so a signal lost or run twice changes what is read:
//! the bench fails, naming the entity, if any count or sum differs from what was sent,
//! also once more after the runtime has shut down (an operation run twice late would
//! otherwise go unseen).

use std::time::{Duration, Instant};

use durable_core::{Client, Runtime, entity};
use serde::{Deserialize, Serialize};

use crate::{Place, WAIT, open, report_stats};

/// What a counter has seen: how many operations, and the sum of their inputs.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    count: u64,
    sum: u64,
}

#[entity]
impl Counter {
    /// Counts one signal carrying `x`.
    pub fn add(&mut self, x: u64) {
        self.count += 1;
        self.sum += x;
    }
}

/// What each entity must hold at the end: its key and its counter.
type Expected = Vec<(String, Counter)>;

/// The signals of a scenario: (entity key, input), in the order they are sent.
fn signals(signals: u64, entities: u64) -> (Vec<(String, u64)>, Expected) {
    let keys: Vec<String> = (0..entities).map(|e| format!("c{e}")).collect();
    let mut expected: Expected = keys
        .iter()
        .map(|k| (k.clone(), Counter::default()))
        .collect();
    let sent = (0..signals)
        .map(|i| {
            let e = (i % entities) as usize;
            expected[e].1.count += 1;
            expected[e].1.sum += i;
            (keys[e].clone(), i)
        })
        .collect();
    (sent, expected)
}

/// Sends every signal at once, each from a task of its own, and waits until every
/// entity's committed state holds what it was sent. Returns the seconds it took.
async fn send_and_settle(
    runtime: &Runtime,
    client: &Client,
    sent: Vec<(String, u64)>,
    expected: &Expected,
) -> f64 {
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (key, x) in sent {
        let client = client.clone();
        tasks.spawn(async move { client.signal_entity(Counter::add, key, x).await });
    }
    while let Some(sent) = tasks.join_next().await {
        sent.expect("a send task panicked")
            .expect("a signal was refused");
    }
    let sent_s = began.elapsed().as_secs_f64();
    let at_sent = runtime.commit_stats();
    let passes = settle(client, expected).await;
    let settled_s = began.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_STATS").is_some() {
        // What the reading costs: a sweep over states already settled.
        let swept = Instant::now();
        settle(client, expected).await;
        eprintln!(
            "entity: every signal durable after {sent_s:.3} s ({} commits in {} writes), \
             every effect after {settled_s:.3} s ({passes} passes over the states; a pass over the \
             settled states takes {:.3} s)",
            at_sent.commits,
            at_sent.writes,
            swept.elapsed().as_secs_f64()
        );
    }
    settled_s
}

/// Reads the states of the entities not yet settled, pass after pass, until each holds
/// its expected counter; fails loudly if one holds more (a signal run twice) or, after
/// [`WAIT`], less (lost). Between passes it waits as long as the pass took (2 ms at
/// least), so that reading (a round trip per entity on PostgreSQL) takes at most half of
/// one connection, and a pass over the few entities left at the end is short. Returns
/// the passes it took.
async fn settle(client: &Client, expected: &Expected) -> u64 {
    let deadline = Instant::now() + WAIT;
    let mut waiting: Vec<&(String, Counter)> = expected.iter().collect();
    let mut passes = 0;
    loop {
        passes += 1;
        let pass = Instant::now();
        let mut still = Vec::new();
        for entity @ (key, want) in waiting {
            let got = client.entity_state::<Counter>(key.as_str()).await.unwrap();
            let got = got.unwrap_or_default();
            assert!(
                got.count <= want.count,
                "entity `{key}` ran {} operations, {} were sent: a signal ran twice",
                got.count,
                want.count
            );
            if got.count == want.count {
                assert_eq!(&got, want, "entity `{key}`: a signal lost, another doubled");
            } else {
                assert!(
                    Instant::now() < deadline,
                    "entity `{key}` holds {got:?} after {WAIT:?}, {want:?} expected: signals lost"
                );
                still.push(entity);
            }
        }
        if still.is_empty() {
            return passes;
        }
        waiting = still;
        tokio::time::sleep(pass.elapsed().max(Duration::from_millis(2))).await;
    }
}

/// Checks every entity once more, after `runtime` has shut down.
async fn check_after_shutdown(client: &Client, expected: &Expected) {
    for (key, want) in expected {
        let got = client.entity_state::<Counter>(key.as_str()).await.unwrap();
        assert_eq!(
            got.as_ref(),
            Some(want),
            "entity `{key}` after shutdown: signals lost or doubled"
        );
    }
}

/// The `entity` scenario: `n` signals to one entity, then `10 × n` over `n` entities,
/// each on a fresh store; one JSON line.
pub async fn run_entity(n: u64, place: Place<'_>) -> String {
    let (one_signals, spread_entities) = (n, n);
    let spread_signals = 10 * n;

    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(open(dir.path(), place))
        .entity::<Counter>()
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let (sent, expected) = signals(one_signals, 1);
    let one_s = send_and_settle(&runtime, &client, sent, &expected).await;
    report_stats("entity (one)", &runtime);
    runtime.shutdown().await;
    check_after_shutdown(&client, &expected).await;
    drop(client);

    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(open(dir.path(), place))
        .entity::<Counter>()
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let (sent, expected) = signals(spread_signals, spread_entities);
    let spread_s = send_and_settle(&runtime, &client, sent, &expected).await;
    report_stats("entity (spread)", &runtime);
    runtime.shutdown().await;
    check_after_shutdown(&client, &expected).await;
    format!(
        r#"{{"scenario":"entity","one_entity_signals":{one_signals},"one_entity_s":{one_s:.3},"spread_signals":{spread_signals},"spread_entities":{spread_entities},"spread_s":{spread_s:.3}}}"#
    )
}
