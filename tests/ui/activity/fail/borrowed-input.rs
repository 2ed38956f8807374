// The input is deserialized from history and must own its data: a reference is
// rejected with a message suggesting `String`.
use durable_core::{ActivityContext, activity};

#[activity]
pub async fn borrowed(_ctx: ActivityContext, input: &str) -> Result<usize, String> {
    Ok(input.len())
}

fn main() {}
