// The error must be `Display` (it is shown to users and recorded): a rustc error that
// points at the user's error type.
use durable_core::{ActivityContext, activity};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Opaque;

#[activity]
pub async fn no_display(_ctx: ActivityContext, input: u32) -> Result<u32, Opaque> {
    Ok(input)
}

fn main() {}
