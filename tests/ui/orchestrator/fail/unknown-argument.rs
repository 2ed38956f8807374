// The arguments are `name = "..."` and `version = N`: anything else is reported, each on its own token,
// together with the signature errors.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator(nmae = "typo", retries = 3, name = 5)]
pub async fn bad_arguments(_ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

#[orchestrator(name = "")]
pub async fn empty_name(_ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
