// An orchestrator is a free function: a `self` receiver is rejected, on the receiver.
use durable_core::{OrchestrationContext, orchestrator};

pub struct Workflows;

impl Workflows {
    #[orchestrator]
    pub async fn with_self(&self, _ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
        Ok(input)
    }
}

fn main() {}
