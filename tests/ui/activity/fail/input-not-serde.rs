// The input is recorded in history: a type without serde's traits is a rustc error that
// points at the user's type in the signature.
use durable_core::{ActivityContext, activity};

pub struct Plain;

#[activity]
pub async fn not_serde(_ctx: ActivityContext, _input: Plain) -> Result<u32, String> {
    Ok(1)
}

fn main() {}
