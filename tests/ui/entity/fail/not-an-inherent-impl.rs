// #[entity] goes on the inherent impl block of the state type, not on a trait impl or
// on the type itself.
use durable_core::entity;

#[entity]
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

pub trait Deposit {
    fn deposit(&mut self, amount: i64);
}

#[entity]
impl Deposit for Account {
    fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }
}

fn main() {}
