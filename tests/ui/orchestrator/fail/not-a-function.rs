// The attribute applies to functions only.
use durable_core::orchestrator;

#[orchestrator]
pub struct NotAFunction;

fn main() {}
