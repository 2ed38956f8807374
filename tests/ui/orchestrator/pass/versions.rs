#![deny(warnings)]

use durable_core::{Orchestrator, OrchestrationContext, orchestrator};

/// The first version, kept while its instances are in flight.
#[orchestrator(name = "quote")]
async fn quote_v1(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

/// The second version, for new instances.
#[orchestrator(name = "quote", version = 2)]
async fn quote_v2(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n + 1)
}

fn main() {
    assert_eq!((quote_v1::NAME, quote_v1::VERSION), ("quote", 1));
    assert_eq!((quote_v2::NAME, quote_v2::VERSION), ("quote", 2));
}
