// A `#[deterministic]` helper gets the same check as an orchestrator: a section's guard
// in scope refuses a nested lock and a sub-orchestration.
use durable_core::{EntityId, OrchestrationContext, deterministic, entity, orchestrator};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn add(&mut self, amount: i64) {
        self.balance += amount;
    }
}

#[orchestrator]
pub async fn audit(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(())
}

#[deterministic]
pub async fn move_funds(ctx: &OrchestrationContext, amount: i64) -> Result<(), String> {
    let guard = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    ctx.call_entity(Account::add, "alice", amount).await?;
    ctx.sub_orchestration(audit, ()).await?;
    guard.release();
    Ok(())
}

fn main() {}
