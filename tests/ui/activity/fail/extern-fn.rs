// An `extern "ABI"` is rejected, on the ABI.
use durable_core::{ActivityContext, activity};

#[activity]
pub async extern "C" fn foreign(_ctx: ActivityContext, input: u32) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
