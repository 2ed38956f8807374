//! The entity part of the chaos workload (issue 14): tallies that record every operation
//! they run, and relays that forward an operation to a tally by an entity-to-entity
//! signal (one in four of them scheduled a moment ahead, `signal_at`).
//!
//! Every operation carries an id of its own (`d-{i}` for a client's signal straight to a
//! tally, `f-{i}` for one forwarded by a relay), and each entity keeps, in its state, the
//! ids of the operations it ran, in order, as a list: an operation run twice shows twice.
//! The check (`verify.rs`) proves each operation's effect happened exactly once: each
//! relay holds each of its forwards once, each tally each of its operations once, and a
//! tally's client signals in the order they were sent.
//!
//! The starter child sends the operations one by one over the kills. A signal it cannot
//! know the fate of (it was killed while sending) is found again by the next run before
//! it sends anything: a sent operation is either a message in the queue or, once its turn
//! committed (which consumes the message in the same commit), in its entity's state; the
//! queue is read before the states, so an operation moving from one to the other in
//! between is still seen.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::record::{Event, WorkItem};
use durable_core::{Client, EntityContext, EntityId, Error, Store, entity};
use serde::{Deserialize, Serialize};

/// Operations per instance of each orchestration pattern (`per_kind`).
const OPS_PER_KIND: u64 = 8;

/// How far ahead a scheduled forward is delivered.
const SCHEDULED_AHEAD: Duration = Duration::from_millis(300);

/// A tally: the ids of the operations it ran, in the order it ran them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    pub ops: Vec<String>,
}

#[entity]
impl Tally {
    /// Records operation `op`.
    pub fn add(&mut self, op: String) {
        self.ops.push(op);
    }
}

/// A relay: the ids of the operations it forwarded, in order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Relay {
    pub forwarded: Vec<String>,
}

/// What a relay forwards: operation `op` to tally `tally`, now or at `at_ms` (ms since
/// the Unix epoch).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hop {
    pub op: String,
    pub tally: String,
    pub at_ms: Option<u64>,
}

#[entity]
impl Relay {
    /// Records `hop.op` and signals it to its tally, in the same turn's commit.
    pub fn forward(&mut self, ctx: &mut EntityContext, hop: Hop) {
        self.forwarded.push(hop.op.clone());
        match hop.at_ms {
            Some(at_ms) => {
                let at = UNIX_EPOCH + Duration::from_millis(at_ms);
                ctx.signal_at(hop.tally.as_str(), Tally::add, hop.op, at);
            }
            None => ctx.signal(hop.tally.as_str(), Tally::add, hop.op),
        }
    }
}

/// One operation of the workload, sent by the starter's client.
#[derive(Clone, Debug)]
pub struct Op {
    pub id: String,
    /// The tally that runs it in the end.
    pub tally: String,
    /// The relay that forwards it, and whether it schedules it ahead; `None` for a
    /// signal straight to the tally.
    pub relay: Option<(String, bool)>,
}

/// The operations of a run with `per_kind` instances of each pattern, in the order they
/// are sent: even ones straight to a tally, odd ones through a relay.
pub fn ops(per_kind: u64) -> Vec<Op> {
    let tallies = per_kind.max(1);
    let relays = per_kind.div_ceil(2).max(1);
    (0..per_kind * OPS_PER_KIND)
        .map(|i| {
            let tally = format!("t{}", (i / 2) % tallies);
            if i % 2 == 0 {
                Op {
                    id: format!("d-{i}"),
                    tally,
                    relay: None,
                }
            } else {
                let relay = format!("r{}", (i / 2) % relays);
                Op {
                    id: format!("f-{i}"),
                    tally,
                    relay: Some((relay, i % 8 == 3)),
                }
            }
        })
        .collect()
}

/// What every entity must hold at the end: its id (`@Tally@t0`), and the ids of its
/// operations in the order they were sent.
pub fn expected(ops: &[Op]) -> BTreeMap<String, Vec<String>> {
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for op in ops {
        let tally = EntityId::of::<Tally>(op.tally.as_str()).to_string();
        expected.entry(tally).or_default().push(op.id.clone());
        if let Some((relay, _)) = &op.relay {
            let relay = EntityId::of::<Relay>(relay.as_str()).to_string();
            expected.entry(relay).or_default().push(op.id.clone());
        }
    }
    expected
}

/// The operation ids an entity's stored state holds (a tally's or a relay's); `None` if
/// the state does not decode.
pub fn state_ops(id: &str, state: &[u8]) -> Option<Vec<String>> {
    if state.is_empty() {
        return Some(Vec::new());
    }
    if id.starts_with(&EntityId::of::<Tally>("").to_string()) {
        serde_json::from_slice::<Tally>(state).ok().map(|t| t.ops)
    } else {
        serde_json::from_slice::<Relay>(state)
            .ok()
            .map(|r| r.forwarded)
    }
}

/// The ids of the operations an earlier run sent: in the queue, or in an entity's state.
fn sent_before(store: &dyn Store, ops: &[Op]) -> Result<BTreeSet<String>, Error> {
    let mut sent = BTreeSet::new();
    // The queue first: see the module's doc.
    for (_, item) in store.work_items()? {
        if let WorkItem::Message {
            event: Event::EntityOperation { input, .. },
            ..
        } = item
        {
            if let Ok(op) = serde_json::from_slice::<String>(&input) {
                sent.insert(op);
            } else if let Ok(hop) = serde_json::from_slice::<Hop>(&input) {
                sent.insert(hop.op);
            }
        }
    }
    for id in expected(ops).keys() {
        if let Some(record) = store.instance(id)? {
            sent.extend(state_ops(id, &record.input).unwrap_or_default());
        }
    }
    Ok(sent)
}

/// The file in the run's directory where each starter run notes how many operations
/// earlier runs had sent, one line each (see [`resumed`]).
pub const SENDS: &str = "entity-sends";

/// Sends every operation no earlier run sent, one after another, `pace` apart (the
/// starter's background task); first notes how many earlier runs sent in `dir`/[`SENDS`].
pub async fn send(
    store: Arc<dyn Store>,
    client: Client,
    ops: Vec<Op>,
    pace: Duration,
    dir: PathBuf,
) -> Result<(), Error> {
    let sent = sent_before(&*store, &ops)?;
    let note = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(SENDS))
        .and_then(|mut file| writeln!(file, "{}", sent.len()));
    if let Err(e) = note {
        eprintln!("chaos: cannot note the entity sends: {e}");
    }
    for op in ops.iter().filter(|op| !sent.contains(&op.id)) {
        match &op.relay {
            None => {
                (client.signal_entity(Tally::add, op.tally.as_str(), op.id.clone())).await?;
            }
            Some((relay, scheduled)) => {
                let at_ms = scheduled.then(|| {
                    let at = SystemTime::now() + SCHEDULED_AHEAD;
                    at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
                });
                let hop = Hop {
                    op: op.id.clone(),
                    tally: op.tally.clone(),
                    at_ms,
                };
                client
                    .signal_entity(Relay::forward, relay.as_str(), hop)
                    .await?;
            }
        }
        tokio::time::sleep(pace).await;
    }
    Ok(())
}

/// How many starter runs found some but not all of the `total` operations sent: each
/// followed a kill that landed while operations were being sent.
pub fn resumed(dir: &Path, total: usize) -> usize {
    std::fs::read_to_string(dir.join(SENDS))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse::<usize>().ok())
        .filter(|&n| n > 0 && n < total)
        .count()
}

/// Waits until every entity's state holds as many operations as it was sent.
pub async fn settle(store: &dyn Store, ops: &[Op], limit: Duration) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + limit;
    let expected = expected(ops);
    loop {
        let mut done = true;
        for (id, want) in &expected {
            let have = match store.instance(id)? {
                Some(record) => state_ops(id, &record.input).map_or(0, |ops| ops.len()),
                None => 0,
            };
            done &= have >= want.len();
        }
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                id: "the chaos entities".to_string(),
                timeout: limit,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
