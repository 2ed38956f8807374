// A `#[deterministic]` helper gets the orchestrator's checks, with messages naming the
// helper: a free function, and the methods of a marked `impl` block.
use durable_core::{OrchestrationContext, deterministic};

#[deterministic]
pub async fn stamp(ctx: &OrchestrationContext, n: u32) -> u32 {
    let _ = (ctx.instance_id(), std::time::SystemTime::now());
    n
}

pub struct Ledger;

#[deterministic]
impl Ledger {
    pub fn record(&self, _ctx: &OrchestrationContext, entry: &str) {
        println!("{entry}");
    }
}

fn main() {}
