// `name = "..."` sets the registered name; without it the name is the function's, raw
// identifiers included.
#![deny(warnings)]

use durable_core::{OrchestrationContext, Orchestrator, orchestrator};

#[orchestrator(name = "order-workflow/v2")]
pub async fn order_workflow_v2(_ctx: OrchestrationContext, id: u64) -> Result<u64, String> {
    Ok(id)
}

#[orchestrator]
pub async fn r#match(_ctx: OrchestrationContext, id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {
    assert_eq!(
        <order_workflow_v2 as Orchestrator>::NAME,
        "order-workflow/v2"
    );
    assert_eq!(<r#match as Orchestrator>::NAME, "match");
}
