// Loops that await are accepted when they can end: a `break`, a `return`, or a
// `continue_as_new` that starts the next generation with a fresh history.
#![deny(warnings)]

use std::time::Duration;

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn wait_until_ready(ctx: OrchestrationContext, polls: u32) -> Result<u32, String> {
    let mut count = 0;
    loop {
        ctx.sleep(Duration::from_secs(1)).await;
        count += 1;
        if count == polls {
            break;
        }
    }
    'outer: loop {
        ctx.sleep(Duration::from_secs(1)).await;
        loop {
            break 'outer;
        }
    }
    loop {
        if ctx.wait_event::<bool>("done").await {
            return Ok(count);
        }
    }
}

#[orchestrator]
pub async fn eternal(ctx: OrchestrationContext, round: u32) -> Result<u32, String> {
    loop {
        ctx.sleep(Duration::from_secs(60)).await;
        return ctx.continue_as_new(round + 1).await;
    }
}

fn main() {
    let _ = (wait_until_ready, eternal);
}
