// Hazards are found in macro arguments: `format!`, `assert!`, `vec!`, and macros whose
// arguments are not expressions (scanned as tokens, like `tracing::info!` fields).
use std::time::SystemTime;

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn described(_ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let text = format!("{:?}", SystemTime::now());
    assert!(std::env::var("DEBUG").is_err(), "{}", text);
    let stamps = vec![std::time::Instant::now(); 2];
    tracing::info!(pid = std::process::id(), "described");
    let _ = stamps;
    Ok(text)
}

fn main() {}
