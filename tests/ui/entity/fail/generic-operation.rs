// An operation's handle is one concrete type: its input is decoded by that type.
use durable_core::entity;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn deposit<T: Into<i64>>(&mut self, amount: T) {
        self.balance += amount.into();
    }
}

fn main() {}
