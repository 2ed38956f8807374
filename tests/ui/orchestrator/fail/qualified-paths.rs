// A qualified path is checked like the plain one: `<SystemTime>::now()` is
// `SystemTime::now()`, `<T as Trait>::f` is `T::f`, through aliases and in macro arguments.
use durable_core::{OrchestrationContext, orchestrator};

trait Reading {
    fn now() -> u64;
}

impl Reading for std::time::Instant {
    fn now() -> u64 {
        0
    }
}

#[orchestrator]
pub async fn qualified(_ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    use std::time::SystemTime as Clock;
    let started = <std::time::SystemTime>::now();
    let again = <Clock>::now();
    let read = <std::time::Instant as Reading>::now();
    let id = <uuid::Uuid>::new_v4();
    let text = format!("{:?}", <std::time::SystemTime>::now());
    tracing::info!(at = ?<std::time::SystemTime>::now(), "read");
    let _ = (started, again, id, text);
    Ok(read)
}

fn main() {}
