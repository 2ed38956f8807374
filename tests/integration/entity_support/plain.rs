//! `Account` in its plainest shape: a balance, `deposit` and `withdraw`. Shared by the
//! integration tests (`orchestration_entities`) and, through `#[path]`, by the replay tests
//! of `durable-core` (`tests/replay/entities.rs`), so it may use nothing but
//! `durable_core` and `serde`.

use durable_core::entity;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub balance: i64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {}", self.balance));
        }
        self.balance -= amount;
        Ok(self.balance)
    }
}
