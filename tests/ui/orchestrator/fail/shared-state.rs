// Rule 12: state shared outside the instance differs between replays and processes:
// `static mut`, statics with interior mutability, `thread_local!`, atomics.
use std::sync::atomic::{AtomicU64, Ordering};

use durable_core::{OrchestrationContext, orchestrator};

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[orchestrator]
pub async fn count(_ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    static mut TOTAL: u64 = 0;
    static CACHE: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
    thread_local! {
        static SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let before = COUNTER.fetch_add(1, Ordering::SeqCst);
    let now = COUNTER.load(Ordering::SeqCst);
    Ok(before + now)
}

fn main() {}
