// The result is recorded in history: a function without a return type is rejected.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn no_return(_ctx: OrchestrationContext, _input: u32) {}

fn main() {}
