// The input follows the context: a lone context is rejected, and the message says to
// add `_input: ()` when there is no input.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn missing_input(_ctx: OrchestrationContext) -> Result<u32, String> {
    Ok(1)
}

fn main() {}
