// The error must be `Display` (it is shown to users and recorded): a rustc error that
// points at the user's error type.
use durable_core::{OrchestrationContext, orchestrator};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Opaque;

#[orchestrator]
pub async fn no_display(_ctx: OrchestrationContext, input: u32) -> Result<u32, Opaque> {
    Ok(input)
}

fn main() {}
