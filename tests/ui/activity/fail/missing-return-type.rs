// The result is recorded in history: a function without a return type is rejected.
use durable_core::{ActivityContext, activity};

#[activity]
pub async fn no_return(_ctx: ActivityContext, _input: u32) {}

fn main() {}
