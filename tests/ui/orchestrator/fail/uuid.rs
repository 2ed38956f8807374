// Rule 3: a fresh id differs on every replay; use `ctx.new_uuid()`. (`uuid` is a
// stand-in module here.)
use durable_core::{OrchestrationContext, orchestrator};

mod uuid {
    pub struct Uuid(pub u128);
    impl Uuid {
        pub fn new_v4() -> Self {
            Uuid(4)
        }
        pub fn now_v7() -> Self {
            Uuid(7)
        }
    }
}

#[orchestrator]
pub async fn register(_ctx: OrchestrationContext, _: ()) -> Result<u128, String> {
    let id = uuid::Uuid::new_v4();
    let sortable = uuid::Uuid::now_v7();
    Ok(id.0 + sortable.0)
}

fn main() {}
