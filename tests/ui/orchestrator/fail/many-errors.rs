// Every broken rule is reported at once, each on its own token.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator(timeout = 5)]
pub fn everything_wrong<T>(_ctx: OrchestrationContext, _input: &str, _extra: u32) {}

fn main() {}
