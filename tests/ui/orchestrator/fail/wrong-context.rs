// The context parameter must be the orchestrator's own context type: rustc reports the
// mismatch on the user's context type.
use durable_core::{ActivityContext, orchestrator};

#[orchestrator]
pub async fn wrong_context(_ctx: ActivityContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
