// Operations are named by typed handles: passing the wrong input type with one is a rustc
// type error at the call site, not a failure when the message is run.
use durable_core::{Entity, Operation, entity};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }
}

fn signal<E: Entity, I, O, Er>(_key: &str, _operation: Operation<E, I, O, Er>, _input: I) {}

fn main() {
    signal("alice", Account::deposit, "ten");
}
