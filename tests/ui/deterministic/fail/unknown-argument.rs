// `#[deterministic]` takes no arguments.
use durable_core::{OrchestrationContext, deterministic};

#[deterministic(strict)]
pub fn plan(_ctx: &OrchestrationContext) {}

fn main() {}
