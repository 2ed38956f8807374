// The context parameter must be the activity's own context type: rustc reports the
// mismatch on the user's context type.
use durable_core::{OrchestrationContext, activity};

#[activity]
pub async fn wrong_context(_ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
