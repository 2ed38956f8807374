// `init` names a `fn() -> State`: a function returning another type is a rustc error on
// the path written in the argument.
use durable_core::entity;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Counter {
    count: u32,
}

fn start() -> u32 {
    100
}

#[entity(init = start)]
impl Counter {
    pub fn add(&mut self) {
        self.count += 1;
    }
}

fn main() {}
