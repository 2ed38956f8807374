// An orchestrator takes the context and the input: an empty parameter list is rejected.
use durable_core::orchestrator;

#[orchestrator]
pub async fn no_params() -> Result<u32, String> {
    Ok(1)
}

fn main() {}
