// A one-argument alias such as `io::Result<T>` hides the error type: rejected with a
// message saying to write `Result<U, E>`.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn alias(_ctx: OrchestrationContext, input: u32) -> std::io::Result<u32> {
    Ok(input)
}

fn main() {}
