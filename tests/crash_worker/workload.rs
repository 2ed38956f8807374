//! The crash test's workload, shared by the worker process and the test that checks it.
//!
//! `pipeline(n)` runs `STEPS` activities in sequence. Each activity writes its effect to
//! a ledger (a fjall database of its own) under its idempotency key, and counts how many
//! times an effect was applied: a redelivered activity finds its key and applies nothing.

use std::path::Path;

use durable_core::{ActivityContext, OrchestrationContext, activity, orchestrator};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

/// Instances the worker starts.
pub const INSTANCES: u64 = 16;
/// Activities per instance.
pub const STEPS: u64 = 6;

/// The instance id of pipeline `n`.
pub fn instance_id(n: u64) -> String {
    format!("pipeline-{n}")
}

/// What pipeline `n` returns.
pub fn expected_output(n: u64) -> u64 {
    (0..STEPS).map(|step| n * 100 + step).sum()
}

/// The effects ledger: key = idempotency key, value = the logical step it applied.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct Ledger {
    db: Database,
    effects: Keyspace,
}

impl Ledger {
    pub fn open(dir: &Path) -> Ledger {
        let db = Database::builder(dir).open().expect("open the ledger");
        let effects = db
            .keyspace("effects", KeyspaceCreateOptions::default)
            .expect("open the effects keyspace");
        Ledger { db, effects }
    }

    /// Applies an effect once per key; returns whether it was applied now.
    fn apply(&self, key: &str, logical: &str) -> bool {
        if self.effects.contains_key(key).expect("read the ledger") {
            return false;
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.effects, key, logical);
        batch.commit().expect("write the ledger");
        true
    }

    /// Every (key, logical step) in the ledger.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.effects
            .iter()
            .map(|guard| {
                let (k, v) = guard.into_inner().expect("read the ledger");
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StepInput {
    pub n: u64,
    pub step: u64,
}

#[activity]
pub async fn apply_step(ctx: ActivityContext, input: StepInput) -> Result<u64, String> {
    // Widens the window in which a kill lands inside an activity.
    tokio::time::sleep(std::time::Duration::from_millis(15 + input.step * 2)).await;
    let ledger = ctx.state::<Ledger>();
    let logical = format!("{}:step-{}", ctx.instance_id(), input.step);
    ledger.apply(ctx.idempotency_key(), &logical);
    Ok(input.n * 100 + input.step)
}

#[orchestrator]
pub async fn pipeline(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let mut total = 0;
    for step in 0..STEPS {
        total += ctx.call(apply_step, StepInput { n, step }).await?;
    }
    Ok(total)
}
