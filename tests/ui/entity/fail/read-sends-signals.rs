// A read (`&self`) changes nothing, signals included: it takes `&EntityContext`.
use durable_core::{EntityContext, entity};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn balance(&self, ctx: &mut EntityContext) -> i64 {
        let _ = ctx;
        self.balance
    }
}

fn main() {}
