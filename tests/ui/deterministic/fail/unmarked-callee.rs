// A `#[deterministic]` helper may only pass the context on to other `#[deterministic]`
// functions.
use durable_core::{OrchestrationContext, deterministic};

fn unchecked(_ctx: &OrchestrationContext) -> u32 {
    1
}

#[deterministic]
pub fn checked(ctx: &OrchestrationContext) -> u32 {
    unchecked(ctx) + 1
}

fn main() {}
