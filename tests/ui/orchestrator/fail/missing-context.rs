// The context is the first parameter: a lone input is rejected, and the message says
// to add the context.
use durable_core::orchestrator;

#[orchestrator]
pub async fn missing_context(input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
