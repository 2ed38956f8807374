// `unsafe fn` is rejected: the runtime calls the body as a safe function.
use durable_core::{ActivityContext, activity};

#[activity]
pub async unsafe fn not_safe(_ctx: ActivityContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
