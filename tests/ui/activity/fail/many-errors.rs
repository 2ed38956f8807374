// Every broken rule is reported at once, each on its own token.
use durable_core::{ActivityContext, activity};

#[activity(timeout = 5)]
pub fn everything_wrong<T>(_ctx: ActivityContext, _input: &str, _extra: u32) {}

fn main() {}
