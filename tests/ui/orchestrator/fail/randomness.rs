// Rule 2: randomness differs on every replay; use `ctx.random()`. (`rand` is a stand-in
// module here: the check goes by the path, as with the real crate.)
use durable_core::{OrchestrationContext, orchestrator};

mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
    pub fn thread_rng() -> u64 {
        4
    }
}

#[orchestrator]
pub async fn lottery(_ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let a: u64 = rand::random();
    let b = rand::thread_rng();
    Ok(a + b)
}

fn main() {}
