// Activities are called through typed handles: passing the wrong input type to
// `ctx.call` is a rustc type error at the call site, not a failure at run time.
use durable_core::{ActivityContext, OrchestrationContext, activity, orchestrator};

#[activity]
pub async fn greet(_ctx: ActivityContext, name: String) -> Result<String, String> {
    Ok(format!("hello, {name}"))
}

#[orchestrator]
pub async fn caller(ctx: OrchestrationContext, _input: ()) -> Result<String, String> {
    let greeting = ctx.call(greet, 5u32).await?;
    Ok(greeting)
}

fn main() {}
