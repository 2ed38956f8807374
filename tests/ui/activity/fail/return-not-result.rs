// The return type must be `Result<U, E>`: the error points at the return type.
use durable_core::{ActivityContext, activity};

#[activity]
pub async fn not_result(_ctx: ActivityContext, input: u32) -> u32 {
    input
}

fn main() {}
