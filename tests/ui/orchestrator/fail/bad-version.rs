use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator(version = 0)]
async fn zero(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[orchestrator(version = "2")]
async fn quoted(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[orchestrator(version = 2, version = 3)]
async fn twice(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

fn main() {}
