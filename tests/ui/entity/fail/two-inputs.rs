// An operation takes at most one input (its message carries one value).
use durable_core::{EntityContext, entity};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn transfer(&mut self, ctx: &mut EntityContext, to: String, amount: i64) {
        let _ = (ctx, to);
        self.balance -= amount;
    }
}

fn main() {}
