// `unsafe fn` is rejected: the runtime calls the body as a safe function.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async unsafe fn not_safe(_ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
