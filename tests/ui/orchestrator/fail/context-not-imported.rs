// A context type that is not in scope is reported once, on the user's type, like any
// unresolved type: the generated code adds no errors of its own.
use durable_core::orchestrator;

#[orchestrator]
pub async fn forgot_import(_ctx: OrchestrationContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
