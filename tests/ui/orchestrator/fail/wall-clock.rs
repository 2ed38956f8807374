// Rule 1: the wall clock differs on every replay. Each read is an error naming the
// orchestrator and `ctx.now()`, which is recorded in history.
use std::time::{Instant, SystemTime};

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn checkout(_ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let started = SystemTime::now();
    let timer = std::time::Instant::now();
    let waited = timer.elapsed();
    let _ = (started, waited, Instant::now());
    Ok(0)
}

fn main() {}
