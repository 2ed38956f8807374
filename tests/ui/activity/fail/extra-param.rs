// A single input: every parameter after the input is reported, and the message says to
// use a tuple or a struct.
use durable_core::{ActivityContext, activity};

#[activity]
pub async fn extra_params(_ctx: ActivityContext, a: u32, b: u32, c: u32) -> Result<u32, String> {
    Ok(a + b + c)
}

fn main() {}
