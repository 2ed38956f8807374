// The input is deserialized from history, so the handle must name its type:
// `impl Trait` is rejected, on the `impl Trait`.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn opaque(_ctx: OrchestrationContext, input: impl Into<u32>) -> Result<u32, String> {
    Ok(input.into())
}

fn main() {}
