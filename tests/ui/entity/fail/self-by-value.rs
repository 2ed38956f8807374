// The state outlives every operation: `self` by value is refused (`&mut self` changes
// it, `&self` reads it).
use durable_core::entity;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn close(self) -> i64 {
        self.balance
    }
}

fn main() {}
