// The input is stored as JSON in the message: a type without serde's traits is a rustc
// error on the operation's signature.
use durable_core::entity;

pub struct Amount(i64);

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: Amount) {
        self.balance += amount.0;
    }
}

fn main() {}
