// The input is recorded in history: a type without serde's traits is a rustc error that
// points at the user's type in the signature.
use durable_core::{OrchestrationContext, orchestrator};

pub struct Plain;

#[orchestrator]
pub async fn not_serde(_ctx: OrchestrationContext, _input: Plain) -> Result<u32, String> {
    Ok(1)
}

fn main() {}
