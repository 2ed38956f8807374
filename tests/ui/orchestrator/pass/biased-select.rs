// `tokio::select!` with `biased;` polls its branches in order, so replay takes the same
// branch: it is accepted, and its branches are still checked (they are clean here).
#![deny(warnings)]

use std::time::Duration;

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn first_of(ctx: OrchestrationContext, _: ()) -> Result<u32, String> {
    let winner = tokio::select! {
        biased;
        approved = ctx.wait_event::<bool>("approved") => u32::from(approved),
        () = ctx.sleep(Duration::from_secs(60)) => 0,
    };
    Ok(winner)
}

fn main() {
    let _ = first_of;
}
