// The attribute applies to functions only.
use durable_core::activity;

#[activity]
pub struct NotAFunction;

fn main() {}
