// What stays accepted around critical sections: calls and signals inside one, a lock or
// a sub-orchestration once it ended (released, dropped, or its block left), a guard
// dropped at once, and look-alikes that are not the context's `lock`.
use std::sync::Mutex;

use durable_core::{CriticalSection, EntityId, OrchestrationContext, entity, orchestrator};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn add(&mut self, amount: i64) -> Result<i64, String> {
        self.balance += amount;
        Ok(self.balance)
    }

    pub fn note(&mut self, _: String) {}
}

#[orchestrator]
pub async fn audit(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(())
}

#[orchestrator]
pub async fn transfer(ctx: OrchestrationContext, amount: i64) -> Result<i64, String> {
    let alice = EntityId::of::<Account>("alice");
    let bob = EntityId::of::<Account>("bob");
    let section = ctx.lock([alice.clone(), bob.clone()]).await?;
    ctx.call_entity(Account::add, &alice, -amount).await?;
    let left = ctx.call_entity(Account::add, bob.clone(), amount).await?;
    ctx.signal_entity(Account::note, "carol", "moved".to_string())?;
    section.release();
    ctx.sub_orchestration(audit, ()).await?;
    {
        let _inner: CriticalSection = ctx.lock([alice.clone()]).await?;
        ctx.call_entity(Account::add, "alice", 0).await?;
    }
    let again = ctx.lock([bob.clone()]).await.map_err(|e| e.to_string())?;
    drop(again);
    let _ = ctx.lock([alice]).await?;
    ctx.sub_orchestration_with_id(audit, "audit-1", ()).await?;
    let child = {
        let mutex = Mutex::new(1);
        let _held = mutex.lock().unwrap();
        ctx.sub_orchestration(audit, ())
    };
    child.await?;
    Ok(left)
}

fn main() {}
