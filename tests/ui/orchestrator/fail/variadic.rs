// A variadic `...` is rejected: the input is one value. (rustc also rejects `...`
// outside `extern` blocks, on the function the macro leaves in place.)
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn variadic(_ctx: OrchestrationContext, input: u32, ...) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
