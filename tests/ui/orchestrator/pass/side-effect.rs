// The escape hatch: the closure passed to `ctx.side_effect(...)` is not checked, since
// its value is recorded in history and replays read it back instead of running it.
#![deny(warnings)]

use std::time::SystemTime;

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn configured(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let region: String = ctx.side_effect(|| std::env::var("REGION").unwrap_or_default());
    let started: SystemTime = ctx.side_effect(SystemTime::now);
    let pid = ctx.side_effect(|| {
        println!("read once");
        std::process::id()
    });
    Ok(format!("{region} {started:?} {pid}"))
}

fn main() {
    let _ = configured;
}
