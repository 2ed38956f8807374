// A variadic `...` is rejected: the input is one value. (rustc also rejects `...`
// outside `extern` blocks, on the function the macro leaves in place.)
use durable_core::{ActivityContext, activity};

#[activity]
pub async fn variadic(_ctx: ActivityContext, input: u32, ...) -> Result<u32, String> {
    Ok(input)
}

fn main() {}
