// An activity's output type is known from its handle: using it as another type is a
// rustc type error in the orchestrator.
use durable_core::{ActivityContext, OrchestrationContext, activity, orchestrator};

#[activity]
pub async fn count(_ctx: ActivityContext, text: String) -> Result<usize, String> {
    Ok(text.len())
}

#[orchestrator]
pub async fn caller(ctx: OrchestrationContext, text: String) -> Result<String, String> {
    let counted: String = ctx.call(count, text).await?;
    Ok(counted)
}

fn main() {}
