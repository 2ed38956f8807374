// `const` is rejected, on the `const` token (rustc also rejects `const async fn` on the
// function the macro leaves in place).
use durable_core::{ActivityContext, activity};

#[activity]
pub const async fn constant(_ctx: ActivityContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
