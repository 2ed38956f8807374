// Hazards are found inside closures, however deeply nested.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn mapped(_ctx: OrchestrationContext, items: Vec<u64>) -> Result<Vec<u64>, String> {
    let stamped = items
        .iter()
        .map(|item| {
            let at = std::time::SystemTime::now();
            let _ = at;
            item + 1
        })
        .collect();
    Ok(stamped)
}

fn main() {}
