// A helper's parameter that holds the context wrapped (`Option<&OrchestrationContext>`)
// is the context too: passing it on needs `#[deterministic]` on the callee, as before the
// restructure of issue 12.
use durable_core::{OrchestrationContext, deterministic};

fn unchecked(_ctx: Option<&OrchestrationContext>) -> u32 {
    1
}

#[deterministic]
pub fn checked(ctx: Option<&OrchestrationContext>) -> u32 {
    unchecked(ctx) + 1
}

fn main() {}
