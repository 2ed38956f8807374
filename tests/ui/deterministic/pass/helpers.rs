// Marked helpers may be called with the context from orchestrators and from each other:
// free functions (local, in a module, imported by `use`, declared in the body), methods,
// associated functions, and trait impls marked on the `impl` block.
#![deny(warnings)]

use durable_core::{ActivityContext, OrchestrationContext, activity, deterministic, orchestrator};

#[activity]
pub async fn charge(_ctx: ActivityContext, amount: u32) -> Result<u32, String> {
    Ok(amount)
}

#[deterministic]
async fn charge_twice(ctx: &OrchestrationContext, amount: u32) -> Result<u32, String> {
    let first = ctx.call(charge, amount).await?;
    let second = pricing::discount(ctx, first);
    Ok(first + second)
}

mod pricing {
    use durable_core::{OrchestrationContext, deterministic};

    #[deterministic]
    pub fn discount(ctx: &OrchestrationContext, amount: u32) -> u32 {
        if ctx.is_replaying() {
            amount
        } else {
            amount / 2
        }
    }
}

use pricing::discount;

pub struct Cart {
    items: Vec<u32>,
}

#[deterministic]
impl Cart {
    fn open(_ctx: &OrchestrationContext) -> Self {
        Cart { items: vec![1, 2] }
    }

    async fn total(&mut self, ctx: &OrchestrationContext) -> Result<u32, String> {
        let mut total = 0;
        for item in self.items.clone() {
            total += ctx.call(charge, item).await?;
        }
        self.items.clear();
        Ok(total)
    }
}

pub trait Step {
    fn weight(&self, ctx: &OrchestrationContext) -> u32;
}

#[deterministic]
impl Step for Cart {
    fn weight(&self, ctx: &OrchestrationContext) -> u32 {
        discount(ctx, self.items.len() as u32)
    }
}

pub struct Meter;

impl Meter {
    #[deterministic]
    pub fn read(&self, ctx: &OrchestrationContext) -> String {
        ctx.instance_id().to_string()
    }
}

#[orchestrator]
pub async fn checkout(ctx: OrchestrationContext, amount: u32) -> Result<u32, String> {
    #[deterministic]
    fn local(ctx: &OrchestrationContext) -> u32 {
        ctx.instance_id().len() as u32
    }

    let charged = charge_twice(&ctx, amount).await?;
    let discounted = discount(&ctx, charged) + pricing::discount(&ctx, 1);
    let mut cart = Cart::open(&ctx);
    let weight = cart.weight(&ctx);
    let total = cart.total(&ctx).await?;
    let reading = Meter.read(&ctx);
    let copy = ctx.clone();
    Ok(discounted + total + weight + local(&copy) + reading.len() as u32)
}

fn main() {
    let _ = checkout;
}
