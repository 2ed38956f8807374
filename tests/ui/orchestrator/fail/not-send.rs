// The runtime moves orchestrators between threads: holding a non-`Send` value across an
// await is a rustc error reported on the orchestrator's name, with the await site.
use std::rc::Rc;

use durable_core::{ActivityContext, OrchestrationContext, activity, orchestrator};

#[activity]
pub async fn double(_ctx: ActivityContext, x: u32) -> Result<u32, String> {
    Ok(x * 2)
}

#[orchestrator]
pub async fn holds_rc(ctx: OrchestrationContext, x: u32) -> Result<u32, String> {
    let shared = Rc::new(x);
    let doubled = ctx.call(double, *shared).await?;
    Ok(doubled + *shared)
}

fn main() {}
