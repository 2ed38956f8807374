// A critical section may not start a sub-orchestration, which could wait on what the
// section holds: start it after the section ends.
use durable_core::{EntityId, OrchestrationContext, entity, orchestrator};

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

#[orchestrator]
pub async fn transfer(ctx: OrchestrationContext, amount: i64) -> Result<(), String> {
    let section = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    ctx.call_entity(Account::add, "alice", -amount).await?;
    let check = async { ctx.sub_orchestration(audit, ()).await };
    check.await.map_err(|e| e.to_string())?;
    ctx.sub_orchestration_with_id(audit, "audit-1", ()).await?;
    drop(section);
    Ok(())
}

fn main() {}
