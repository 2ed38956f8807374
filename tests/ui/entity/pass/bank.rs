// The documented forms of an entity: operations with and without a context, an input
// and a `Result`; reads; helpers (private, `pub(crate)`, associated functions) left as
// written; a custom name and initial state; handles used as values.
use std::time::{Duration, SystemTime};

use durable_core::{Entity, EntityContext, EntityId, NoError, Operation, OperationKind, entity};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
    history: Vec<i64>,
}

#[entity]
impl Account {
    /// Adds `amount`.
    pub fn deposit(&mut self, amount: i64) {
        self.record(amount);
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err("insufficient funds".into());
        }
        self.record(-amount);
        Ok(self.balance)
    }

    pub fn transfer(
        &mut self,
        ctx: &mut EntityContext,
        (to, amount): (String, i64),
    ) -> Result<(), String> {
        self.record(-amount);
        ctx.signal(to.as_str(), Account::deposit, amount);
        ctx.signal_at(
            ctx.id().clone(),
            Account::audit,
            (),
            SystemTime::UNIX_EPOCH + Duration::from_secs(60),
        );
        Ok(())
    }

    pub fn audit(&mut self, _ctx: &EntityContext) {}

    pub fn balance(&self) -> i64 {
        self.balance
    }

    pub fn whoami(&self, ctx: &EntityContext) -> String {
        ctx.id().to_string()
    }

    #[must_use]
    #[allow(clippy::needless_pass_by_value)]
    pub fn r#type(&self, _unused: Option<u8>) -> Vec<u8> {
        Vec::new()
    }

    pub fn new(balance: i64) -> Self {
        Account {
            balance,
            history: Vec::new(),
        }
    }

    pub(crate) fn total(&self) -> i64 {
        self.history.iter().sum()
    }

    fn record(&mut self, amount: i64) {
        self.balance += amount;
        self.history.push(amount);
    }
}

#[derive(Serialize, Deserialize)]
pub enum Light {
    On,
    Off,
}

fn off() -> Light {
    Light::Off
}

#[entity(name = "light", init = off)]
impl Light {
    pub fn toggle(&mut self) -> bool {
        *self = match self {
            Light::On => Light::Off,
            Light::Off => Light::On,
        };
        matches!(self, Light::On)
    }
}

/// What an orchestrator's `signal` will look like: the input's type comes from the handle.
fn send<E: Entity, I, O, Er>(_to: &EntityId, operation: Operation<E, I, O, Er>, _input: I) -> &'static str {
    operation.name()
}

fn main() {
    let alice = EntityId::of::<Account>("alice");
    assert_eq!(send(&alice, Account::deposit, 5), "deposit");
    assert_eq!(send(&alice, Account::transfer, ("bob".into(), 5)), "transfer");
    let _: Operation<Account, i64, i64, String> = Account::withdraw;
    let _: Operation<Account, (), i64, NoError> = Account::balance;
    assert_eq!(Account::r#type.name(), "type");
    assert_eq!(Account::whoami.kind(), OperationKind::Read);
    assert_eq!(Light::NAME, "light");
    assert_eq!(Account::new(3).total(), 0);
}
