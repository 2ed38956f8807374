// The next generation takes the orchestrator's own input type: `continue_as_new` with
// another is a type error on the argument, not bytes the next generation misreads.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn countdown(ctx: OrchestrationContext, remaining: u32) -> Result<u32, String> {
    match remaining {
        0 => Ok(0),
        1 => ctx.continue_as_new("text").await,
        2 => ctx.continue_as_new(remaining.to_string()).await,
        _ => ctx.continue_as_new(&remaining).await,
    }
}

fn main() {}
