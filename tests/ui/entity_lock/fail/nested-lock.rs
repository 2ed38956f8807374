// A critical section may not lock again (Durable Functions' locking rules): lock every
// entity in one `lock`, or end the section first.
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
pub async fn transfer(ctx: OrchestrationContext, amount: i64) -> Result<(), String> {
    let section = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    ctx.call_entity(Account::add, "alice", -amount).await?;
    let more = ctx.lock([EntityId::of::<Account>("bob")]).await?;
    if amount > 10 {
        let _again = ctx.lock([EntityId::of::<Account>("carol")]).await.unwrap();
    }
    more.release();
    section.release();
    Ok(())
}

fn main() {}
