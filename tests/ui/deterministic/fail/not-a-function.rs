// `#[deterministic]` applies to functions and `impl` blocks.
use durable_core::deterministic;

#[deterministic]
pub struct Helper;

fn main() {}
