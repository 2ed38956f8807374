// Rule 4: a timer outside history is forgotten on restart and waited again on replay;
// use `ctx.sleep(...)` or `ctx.timeout(...)`.
use std::time::Duration;

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn nap(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    std::thread::sleep(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async { 1 }).await;
    Ok(())
}

fn main() {}
