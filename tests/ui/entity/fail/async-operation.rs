// An operation runs to completion inside one turn of its entity, its state change and
// signals committed with it: it cannot await.
use durable_core::entity;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub async fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }
}

fn main() {}
