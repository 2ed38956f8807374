// Rule 9: a replay runs in another process, with another environment: pass it in the
// input or read it in an activity.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn configure(_ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let region = std::env::var("REGION").unwrap_or_default();
    let args: Vec<String> = std::env::args().collect();
    let pid = std::process::id();
    Ok(format!("{region} {args:?} {pid} {}", std::env::consts::OS))
}

fn main() {}
