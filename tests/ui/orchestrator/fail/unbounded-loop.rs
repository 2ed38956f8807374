// Rule 16: a `loop` that awaits and never ends grows its history forever. End each
// round with `return ctx.continue_as_new(input).await;` (or give the loop an exit).
use std::time::Duration;

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn poll_forever(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let mut polls = 0u64;
    loop {
        ctx.sleep(Duration::from_secs(60)).await;
        polls += 1;
        // Breaks the inner loop only.
        for _ in 0..polls {
            break;
        }
    }
}

fn main() {}
