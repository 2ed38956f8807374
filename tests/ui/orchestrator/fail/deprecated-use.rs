// A `#[deprecated]` orchestrator (an old version kept for instances in flight) warns
// where it is named, here denied into an error, while its definition stays silent.
#![deny(deprecated)]

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator(name = "approve/v1")]
#[deprecated = "start `approve` instead"]
pub async fn approve_v1(_ctx: OrchestrationContext, _amount: u32) -> Result<bool, String> {
    Ok(false)
}

fn main() {
    let _ = approve_v1;
}
