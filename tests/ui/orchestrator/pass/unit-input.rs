// An orchestrator without input takes `()`, and one without output returns `()`.
#![deny(warnings)]

use durable_core::{OrchestrationContext, Orchestrator, orchestrator};

#[orchestrator]
pub async fn nightly(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(())
}

fn main() {
    let _: <nightly as Orchestrator>::Input = ();
    let _: <nightly as Orchestrator>::Output = ();
}
