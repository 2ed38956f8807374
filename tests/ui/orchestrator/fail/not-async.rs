// An orchestrator must be `async`: the error points at `fn` and says to add `async`.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub fn not_async(_ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
