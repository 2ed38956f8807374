// An activity must be `async`: the error points at `fn` and says to add `async`.
use durable_core::{ActivityContext, activity};

#[activity]
pub fn not_async(_ctx: ActivityContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
