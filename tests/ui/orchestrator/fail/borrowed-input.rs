// The input is deserialized from history and must own its data: a reference is
// rejected with a message suggesting `String`.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn borrowed(_ctx: OrchestrationContext, input: &str) -> Result<usize, String> {
    Ok(input.len())
}

fn main() {}
