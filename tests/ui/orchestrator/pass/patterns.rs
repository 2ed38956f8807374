// Parameter patterns, visibility and paths to `Result` are kept as written; the body
// stays callable as `name::run`.
#![deny(warnings)]

use durable_core::{OrchestrationContext, orchestrator};

mod workflows {
    use durable_core::{OrchestrationContext, orchestrator};

    #[orchestrator]
    pub(crate) async fn sum(
        mut ctx: OrchestrationContext,
        (a, b): (u32, u32),
    ) -> ::core::result::Result<u32, String> {
        ctx = ctx.clone();
        let _ = ctx;
        Ok(a + b)
    }
}

#[orchestrator]
async fn ignored(_: OrchestrationContext, _: Vec<String>) -> std::result::Result<(), String> {
    Ok(())
}

fn main() {
    let _ = workflows::sum::run;
    let _ = ignored::run;
    let _ = (workflows::sum, ignored);
}
