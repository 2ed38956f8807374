// Rule 5: spawned work runs outside history; do it in an activity and fan out with
// `ctx.join_all(...)`.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn fan_out(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let task = tokio::spawn(async { 1 });
    let blocking = tokio::task::spawn_blocking(|| 2);
    let thread = std::thread::spawn(|| 3);
    let _ = (task, blocking, thread);
    Ok(())
}

fn main() {}
