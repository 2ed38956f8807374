// An event's type is declared once, with its name: waiting for it as another type, or
// raising a payload of another type, is a type error, not an event the wait cannot read.
use durable_core::{Client, EventName, OrchestrationContext, orchestrator};

pub const APPROVED: EventName<bool> = EventName::new("approved");

#[orchestrator]
pub async fn expense(ctx: OrchestrationContext, amount: u64) -> Result<u64, String> {
    let approved: String = ctx.wait_event(APPROVED).await;
    Ok(amount + approved.len() as u64)
}

pub async fn approve(client: &Client) {
    client.raise_event("e", APPROVED, &"yes").await.unwrap();
}

fn main() {}
