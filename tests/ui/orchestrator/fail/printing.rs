// Rule 11: printing repeats on every replay; use `tracing` (suppressed while replaying)
// or log in an activity.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn chatty(_ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
    println!("starting {n}");
    eprintln!("warning");
    print!("no newline");
    let n = dbg!(n + 1);
    Ok(n)
}

fn main() {}
