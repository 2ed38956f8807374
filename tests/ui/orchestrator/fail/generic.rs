// A handle is one concrete type: generic parameters and where clauses are rejected.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn generic<T>(_ctx: OrchestrationContext, input: T) -> Result<T, String>
where
    T: Clone,
{
    Ok(input)
}

fn main() {}
