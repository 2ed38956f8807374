// The input is deserialized from history, so the handle must name its type:
// `impl Trait` is rejected, on the `impl Trait`.
use durable_core::{ActivityContext, activity};

#[activity]
pub async fn opaque(_ctx: ActivityContext, input: impl Into<u32>) -> Result<u32, String> {
    Ok(input.into())
}

fn main() {}
