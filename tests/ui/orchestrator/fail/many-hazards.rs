// Every hazard of a body is reported in one compile, each on its own tokens.
use std::collections::HashMap;

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn everything_wrong(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let started = std::time::Instant::now();
    let seen: HashMap<u32, u32> = HashMap::new();
    println!("{:?} {}", started, seen.len());
    let _ = std::env::var("HOME");
    let _ = tokio::spawn(async {});
    loop {
        ctx.sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn main() {}
