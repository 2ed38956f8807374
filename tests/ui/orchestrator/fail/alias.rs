// A `use ... as` in the body does not hide a hazard: the alias is followed to the path it
// imports. An import that is itself a hazard (`HashMap`) is reported at the import, once.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn aliased(_ctx: OrchestrationContext, _: ()) -> Result<usize, String> {
    use std::collections::HashMap as Map;
    use std::thread as threads;
    use std::time::SystemTime as Clock;
    let started = Clock::now();
    threads::sleep(std::time::Duration::from_millis(1));
    let map: Map<u32, u32> = Map::new();
    let _ = started;
    Ok(map.len())
}

fn main() {}
