// Operations are named by typed handles: passing the wrong input type with one is a rustc
// type error at the call site, not a failure when the message is run. Here through a
// generic function of the shape an orchestrator's `signal` will have, and through an
// operation's own `ctx.signal`.
use durable_core::{Entity, EntityContext, Operation, entity};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    pub fn pay_bob(&mut self, ctx: &mut EntityContext) {
        ctx.signal("bob", Account::deposit, 5u32);
    }
}

fn signal<E: Entity, I, O, Er>(_key: &str, _operation: Operation<E, I, O, Er>, _input: I) {}

fn main() {
    signal("alice", Account::deposit, "ten");
}
