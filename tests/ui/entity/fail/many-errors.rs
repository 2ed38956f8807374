// Every broken rule is reported at once, each on its own tokens.
use durable_core::{EntityContext, entity};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity(nmae = "x", init = Account::default())]
impl Account {
    pub fn deposit(&mut self, amount: i64, ctx: &mut EntityContext) {
        let _ = ctx;
        self.balance += amount;
    }

    pub fn peek(&self, ctx: EntityContext) -> anyhow::Result<i64> {
        let _ = ctx;
        Ok(self.balance)
    }

    pub fn name(&self) -> &str {
        "account"
    }
}

fn main() {}
