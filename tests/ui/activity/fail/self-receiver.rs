// An activity is a free function: a `self` receiver is rejected, on the receiver.
use durable_core::{ActivityContext, activity};

pub struct Workflows;

impl Workflows {
    #[activity]
    pub async fn with_self(&self, _ctx: ActivityContext, input: u32) -> Result<u32, String> {
        Ok(input)
    }
}

fn main() {}
