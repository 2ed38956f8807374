// The state is stored as JSON between operations: a state type without serde's traits is
// a rustc error on the impl block's type.
use durable_core::entity;

#[derive(Default)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }
}

fn main() {}
