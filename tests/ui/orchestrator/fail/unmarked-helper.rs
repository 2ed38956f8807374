// Rule 17: a function that receives the context must be `#[deterministic]`, so that its
// body gets the same checks. Each call passing the context to an unmarked function,
// method or associated function is an error at the call. Pure helpers stay free.
use durable_core::{OrchestrationContext, orchestrator};

async fn reserve(ctx: &OrchestrationContext, sku: u32) -> u32 {
    let _ = ctx.instance_id();
    sku
}

mod pricing {
    pub fn quote(_ctx: durable_core::OrchestrationContext) -> u32 {
        3
    }
}

struct Cart;

impl Cart {
    fn total(&self, _ctx: &OrchestrationContext) -> u32 {
        1
    }
    fn open(_ctx: &OrchestrationContext) -> Self {
        Cart
    }
}

fn double(x: u32) -> u32 {
    x * 2
}

#[orchestrator]
pub async fn checkout(ctx: OrchestrationContext, sku: u32) -> Result<u32, String> {
    let reserved = reserve(&ctx, sku).await;
    let price = pricing::quote(ctx.clone());
    let opened = Cart::open(&ctx);
    let total = Cart.total(&ctx);
    let _ = opened;
    Ok(double(reserved + price + total))
}

fn main() {}
