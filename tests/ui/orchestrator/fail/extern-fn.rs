// An `extern "ABI"` is rejected, on the ABI.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async extern "C" fn foreign(_ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
