// Code that looks like a hazard but is replay-safe stays accepted: a variable called
// `now`, the context's own methods, a local type with a `now()` method, `Duration`,
// `BTreeMap`, a plain `static`, a string that says "sleep", a pure helper, `Ordering`
// from `cmp`, `std::env::consts`, and `SystemTime` values that are not read from the clock.
#![deny(warnings)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::{OrchestrationContext, orchestrator};

static LIMIT: u32 = 3;

struct Clock;

impl Clock {
    fn now(&self) -> u64 {
        7
    }
}

fn double(x: u64) -> u64 {
    x * 2
}

#[orchestrator]
pub async fn look_alikes(ctx: OrchestrationContext, items: Vec<u32>) -> Result<String, String> {
    let now = ctx.now();
    let elapsed = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let id = ctx.instance_id().to_string();
    let replaying = ctx.is_replaying();
    let random = ctx.random();
    let uuid = ctx.new_uuid();
    let local = Clock.now();
    let pause = Duration::from_secs(u64::from(LIMIT));
    ctx.sleep(pause).await;
    let mut counts = BTreeMap::new();
    for item in &items {
        *counts.entry(*item).or_insert(0u32) += 1;
    }
    let unique: BTreeSet<_> = items.iter().collect();
    let message = "sleep, spawn and println! are only words here";
    let order = 1.cmp(&2) == std::cmp::Ordering::Less;
    let epoch = SystemTime::UNIX_EPOCH;
    Ok(format!(
        "{now:?} {elapsed:?} {id} {replaying} {random} {uuid} {} {} {} {message} {order} {epoch:?} {}",
        double(local),
        counts.len(),
        unique.len(),
        std::env::consts::OS,
    ))
}

fn main() {
    let _ = look_alikes;
}
