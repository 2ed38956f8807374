//! Entities from a user's crate, driven by hand the way the runtime will drive them: each
//! operation through `Entity::dispatch`, the stored state replaced only by an operation
//! that succeeded, and the signals it returns delivered as further operations. Money moves
//! between accounts by signals; a failed transfer moves nothing.

use std::collections::{BTreeMap, VecDeque};

use durable_core::{Entity, EntityContext, EntityError, EntityId, Signal, entity};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    pub fn transfer(
        &mut self,
        ctx: &mut EntityContext,
        (to, amount): (String, i64),
    ) -> Result<i64, String> {
        ctx.signal(to, Account::deposit, amount);
        if amount > self.balance {
            return Err(format!("insufficient funds: {} < {amount}", self.balance));
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    pub fn balance(&self) -> i64 {
        self.balance
    }
}

/// The stored states, and the signals not yet delivered.
#[derive(Default)]
struct Bank {
    states: BTreeMap<EntityId, Vec<u8>>,
    queue: VecDeque<Signal>,
}

impl Bank {
    fn run(&mut self, key: &str, operation: &str, input: &str) -> Result<Vec<u8>, EntityError> {
        let id = EntityId::of::<Account>(key);
        let state = self.states.get(&id).map(Vec::as_slice);
        let done = Account::dispatch(&id, state, operation, input.as_bytes())?;
        if let Some(state) = done.state {
            self.states.insert(id, state);
        }
        self.queue.extend(done.signals);
        Ok(done.output)
    }

    fn deliver(&mut self) {
        while let Some(signal) = self.queue.pop_front() {
            let input = String::from_utf8(signal.input).unwrap();
            self.run(signal.target.key(), signal.operation, &input)
                .unwrap();
        }
    }

    fn balance(&mut self, key: &str) -> i64 {
        serde_json::from_slice(&self.run(key, "balance", "null").unwrap()).unwrap()
    }
}

#[test]
fn signals_move_money_and_a_failed_operation_moves_none() {
    let mut bank = Bank::default();
    bank.run("alice", Account::deposit.name(), "10").unwrap();
    bank.run("alice", Account::transfer.name(), r#"["bob", 4]"#)
        .unwrap();
    bank.deliver();
    assert_eq!((bank.balance("alice"), bank.balance("bob")), (6, 4));

    let error = bank
        .run("bob", Account::transfer.name(), r#"["carol", 5]"#)
        .unwrap_err();
    assert!(matches!(error, EntityError::Returned { .. }), "{error}");
    assert!(
        bank.queue.is_empty(),
        "the failed transfer's signal went out"
    );
    bank.deliver();
    assert_eq!(
        (
            bank.balance("alice"),
            bank.balance("bob"),
            bank.balance("carol")
        ),
        (6, 4, 0)
    );
    // A read stores nothing: `carol` was only read, never written.
    assert!(!bank.states.contains_key(&EntityId::of::<Account>("carol")));
}
