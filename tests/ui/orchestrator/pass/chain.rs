// An orchestrator chaining two activities through their typed handles, each result
// feeding the next call, with `?` turning an `ActivityError` into the `String` error.
#![deny(warnings)]

use durable_core::{ActivityContext, OrchestrationContext, Orchestrator, activity, orchestrator};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub amount: u32,
}

#[activity]
pub async fn reserve(_ctx: ActivityContext, order: Order) -> Result<u32, String> {
    Ok(order.amount)
}

#[activity]
pub async fn charge(_ctx: ActivityContext, amount: u32) -> Result<String, String> {
    Ok(format!("charged {amount}"))
}

#[orchestrator]
pub async fn checkout(ctx: OrchestrationContext, order: Order) -> Result<String, String> {
    let amount = ctx.call(reserve, order).await?;
    let receipt = ctx.call(charge, amount).await?;
    Ok(receipt)
}

fn main() {
    fn takes_orchestrator<O: Orchestrator<Input = Order, Output = String, Error = String>>(_: O) {}
    takes_orchestrator(checkout);
    assert_eq!(checkout::NAME, "checkout");
}
