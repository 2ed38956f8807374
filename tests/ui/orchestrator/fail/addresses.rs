// Rule 13: addresses differ on every run; use stable ids.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn identify(_ctx: OrchestrationContext, items: Vec<u32>) -> Result<String, String> {
    let base = items.as_ptr();
    let key = &items as *const Vec<u32> as usize;
    Ok(format!("{base:?} {key} {:p}", &items))
}

fn main() {}
