//! The pure dispatch step, on entities made by `#[entity]`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use durable_macros::entity;
use serde::{Deserialize, Serialize};

use crate::entity::{
    Dispatched, Entity, EntityContext, EntityError, EntityId, EntityIdError, NoError, Operation,
    OperationInfo, OperationKind, SignalRefusal, Unencodable,
};
use crate::payload;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: i64,
    /// Counts reads, through interior mutability: a read must still change nothing.
    #[serde(skip)]
    peeks: Cell<u32>,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        self.take(amount)
    }

    /// Takes `amount` and signals it to `to`: the state change and the signal go
    /// together, or neither does.
    pub fn transfer(
        &mut self,
        ctx: &mut EntityContext,
        (to, amount): (String, i64),
    ) -> Result<i64, String> {
        ctx.signal(to, Account::deposit, amount);
        self.take(amount)
    }

    /// Changes the state and records a signal, then panics.
    pub fn explode(&mut self, ctx: &mut EntityContext) {
        self.balance = -1;
        ctx.signal("bob", Account::deposit, 1);
        panic!("boom in {}", ctx.key());
    }

    /// Pays interest later, to itself.
    pub fn schedule_interest(&mut self, ctx: &mut EntityContext, at_secs: u64) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at_secs);
        let me = ctx.id().clone();
        ctx.signal_at(&me, Account::deposit, 1, at);
    }

    /// Signals an id of another entity type with an `Account` operation.
    pub fn misdirect(&mut self, ctx: &mut EntityContext) {
        self.balance += 1;
        ctx.signal(EntityId::of::<Counter>("c"), Account::deposit, 1);
    }

    /// Signals a map JSON cannot encode.
    pub fn send_tally(&mut self, ctx: &mut EntityContext) {
        self.balance += 1;
        ctx.signal("bob", Account::tally, BTreeMap::from([((1, 2), 3)]));
    }

    pub fn tally(&mut self, _tally: BTreeMap<(u8, u8), u8>) {}

    /// Returns a map JSON cannot encode.
    pub fn unencodable(&mut self) -> BTreeMap<(u8, u8), u8> {
        self.balance += 1;
        BTreeMap::from([((1, 2), 3)])
    }

    pub fn balance(&self, ctx: &EntityContext) -> (String, i64) {
        self.peeks.set(self.peeks.get() + 1);
        (ctx.id().to_string(), self.balance)
    }

    fn take(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {} < {amount}", self.balance));
        }
        self.balance -= amount;
        Ok(self.balance)
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Counter {
    count: u32,
}

impl Counter {
    fn start() -> Self {
        Counter { count: 100 }
    }
}

#[entity(name = "rate-counter", init = Counter::start)]
impl Counter {
    pub fn add(&mut self) -> u32 {
        self.count += 1;
        self.count
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Fragile;

#[entity(init = Fragile::broken)]
impl Fragile {
    pub fn touch(&mut self) {}
}

impl Fragile {
    fn broken() -> Self {
        panic!("no initial state today")
    }
}

/// An entity's stored state, advanced by each operation as a runtime would: replaced
/// only by the state of an operation that succeeded.
struct Stored<E> {
    id: EntityId,
    state: Option<Vec<u8>>,
    _entity: std::marker::PhantomData<E>,
}

impl<E: Entity> Stored<E> {
    fn new(key: &str) -> Self {
        Stored {
            id: EntityId::of::<E>(key),
            state: None,
            _entity: std::marker::PhantomData,
        }
    }

    fn run(&mut self, operation: &str, input: &str) -> Result<Dispatched, EntityError> {
        let done = E::dispatch(&self.id, self.state.as_deref(), operation, input.as_bytes())?;
        if let Some(state) = &done.state {
            self.state = Some(state.clone());
        }
        Ok(done)
    }

    fn json(&self) -> serde_json::Value {
        payload::to_json(self.state.as_deref().expect("a state")).unwrap()
    }
}

fn output<T: serde::de::DeserializeOwned>(done: &Dispatched) -> T {
    payload::decode(&done.output).unwrap()
}

#[test]
fn an_operation_changes_the_state_from_the_default_and_returns_its_output() {
    let mut alice = Stored::<Account>::new("alice");
    let done = alice.run("deposit", "10").unwrap();
    assert_eq!(done.kind, OperationKind::Write);
    assert_eq!(done.output, b"null");
    assert!(done.signals.is_empty());
    assert_eq!(alice.json(), serde_json::json!({ "balance": 10 }));
    let done = alice.run("withdraw", "4").unwrap();
    assert_eq!(output::<i64>(&done), 6);
    assert_eq!(alice.json(), serde_json::json!({ "balance": 6 }));
}

#[test]
fn a_read_leaves_the_stored_bytes_as_they_were() {
    let mut alice = Stored::<Account>::new("alice");
    alice.run("deposit", "3").unwrap();
    let before = alice.state.clone();
    // The read bumps a `Cell`: even so, the state it returns is "unchanged".
    let done = alice.run("balance", "null").unwrap();
    assert_eq!(done.kind, OperationKind::Read);
    assert_eq!(done.state, None);
    assert_eq!(
        output::<(String, i64)>(&done),
        ("@Account@alice".to_string(), 3)
    );
    assert_eq!(alice.state, before);
    // A read of an entity never operated on reads the initial state.
    let done = Stored::<Account>::new("nobody")
        .run("balance", "null")
        .unwrap();
    assert_eq!(output::<(String, i64)>(&done).1, 0);
    assert_eq!(done.state, None);
}

#[test]
fn an_error_drops_the_state_change_and_the_signals() {
    let mut alice = Stored::<Account>::new("alice");
    alice.run("deposit", "5").unwrap();
    let before = alice.state.clone();
    let error = alice.run("transfer", r#"["bob", 8]"#).unwrap_err();
    let EntityError::Returned {
        entity,
        operation,
        payload: value,
        message,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (entity.to_string().as_str(), *operation),
        ("@Account@alice", "transfer")
    );
    assert_eq!(message, "insufficient funds: 5 < 8");
    assert_eq!(payload::decode::<String>(value).unwrap(), *message);
    assert_eq!(
        error.to_string(),
        "operation `transfer` of entity `@Account@alice` failed, its state change and signals \
         dropped: insufficient funds: 5 < 8"
    );
    assert_eq!(alice.state, before);
    // The same operation, when it succeeds, carries its signal.
    let done = alice.run("transfer", r#"["bob", 2]"#).unwrap();
    assert_eq!(done.signals.len(), 1);
    let signal = &done.signals[0];
    assert_eq!(
        (
            signal.target.to_string().as_str(),
            signal.operation,
            signal.input.as_slice(),
            signal.at
        ),
        ("@Account@bob", "deposit", &b"2"[..], None)
    );
    assert_eq!(alice.json(), serde_json::json!({ "balance": 3 }));
}

#[test]
fn a_panic_is_caught_and_drops_the_state_change_and_the_signals() {
    let mut alice = Stored::<Account>::new("alice");
    alice.run("deposit", "5").unwrap();
    let before = alice.state.clone();
    let error = alice.run("explode", "null").unwrap_err();
    assert_eq!(
        error,
        EntityError::Panicked {
            entity: EntityId::of::<Account>("alice"),
            operation: "explode",
            message: "boom in alice".into(),
        }
    );
    assert!(error.to_string().contains("`explode`"), "{error}");
    assert!(error.to_string().contains("`@Account@alice`"), "{error}");
    assert!(error.to_string().ends_with("boom in alice"), "{error}");
    assert_eq!(alice.state, before);
    // A panicking initial state runs no operation.
    let error = Stored::<Fragile>::new("f")
        .run("touch", "null")
        .unwrap_err();
    assert!(
        matches!(&error, EntityError::InitialStatePanicked { message, .. } if message == "no initial state today"),
        "{error:?}"
    );
}

#[test]
fn undecodable_input_or_state_and_unknown_operations_say_what_to_do_and_touch_nothing() {
    let mut alice = Stored::<Account>::new("alice");
    alice.run("deposit", "5").unwrap();
    let before = alice.state.clone();

    let error = alice.run("deposit", r#""ten""#).unwrap_err();
    assert!(
        matches!(error, EntityError::UndecodableInput { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.starts_with(
            "the input of operation `deposit` of entity `@Account@alice` does not decode"
        ),
        "{text}"
    );
    assert!(text.contains("`i64`"), "{text}");

    let error = alice.run("close", "null").unwrap_err();
    assert_eq!(
        error.to_string(),
        "entity `@Account@alice` has no operation `close` (its operations: deposit, withdraw, \
         transfer, explode, schedule_interest, misdirect, send_tally, tally, unencodable, \
         balance); was it renamed \
         or removed? Deploy code that has it under that name to run the message"
    );
    assert_eq!(alice.state, before);

    // A state stored by an older type that this one cannot read.
    alice.state = Some(br#"{"balance":"ten"}"#.to_vec());
    let error = alice.run("deposit", "1").unwrap_err();
    let EntityError::UndecodableState { error: cause, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(cause.type_name.ends_with("Account"), "{cause}");
    let text = error.to_string();
    assert!(
        text.starts_with("the stored state of entity `@Account@alice` does not decode, so operation `deposit` did not run"),
        "{text}"
    );
    assert!(text.contains("#[serde(default)]"), "{text}");
    assert_eq!(alice.state.as_deref(), Some(&br#"{"balance":"ten"}"#[..]));
    assert_eq!(
        (error.entity().key(), error.operation()),
        ("alice", "deposit")
    );
}

#[test]
fn signals_are_recorded_in_order_with_their_time_and_checked() {
    let mut alice = Stored::<Account>::new("alice");
    let done = alice.run("schedule_interest", "86400").unwrap();
    assert_eq!(
        done.signals[0].at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400))
    );
    assert_eq!(done.signals[0].target, EntityId::of::<Account>("alice"));

    let error = alice.run("misdirect", "null").unwrap_err();
    assert_eq!(
        error.to_string(),
        "operation `misdirect` of entity `@Account@alice` was dropped: it signalled \
         `@rate-counter@c` with operation `deposit` of entity type `Account`; signal a `Account` id, or its key \
         alone"
    );
    let error = alice.run("send_tally", "null").unwrap_err();
    let EntityError::BadSignal { refusal, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(
            &**refusal,
            SignalRefusal::UnencodableInput {
                operation: "tally",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("operation `send_tally` of entity `@Account@alice` was dropped: the input of its signal `tally` to `@Account@bob` does not encode: "),
        "{error}"
    );
    // An id the store cannot hold (a control character; over 256 bytes), which the
    // client refuses too, fails the operation that signals it, its state change dropped.
    let long = "k".repeat(300);
    for to in ["a\nb", long.as_str()] {
        let input = serde_json::json!([to, 0]).to_string();
        let error = alice.run("transfer", &input).unwrap_err();
        let EntityError::BadSignal { refusal, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(
            matches!(
                &**refusal,
                SignalRefusal::InvalidTarget {
                    operation: "deposit",
                    ..
                }
            ),
            "{error:?}"
        );
    }
    let error = alice.run("unencodable", "null").unwrap_err();
    assert!(
        matches!(
            &error,
            EntityError::Unencodable {
                what: Unencodable::Output,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(alice.json(), serde_json::json!({ "balance": 0 }));
}

#[test]
fn an_init_function_and_a_custom_name() {
    assert_eq!(Counter::NAME, "rate-counter");
    assert_eq!(
        Counter::OPERATIONS,
        [OperationInfo {
            name: "add",
            kind: OperationKind::Write
        }]
    );
    let mut counter = Stored::<Counter>::new("api");
    assert_eq!(counter.id.to_string(), "@rate-counter@api");
    let done = counter.run("add", "null").unwrap();
    assert_eq!(output::<u32>(&done), 101);
    assert_eq!(counter.json(), serde_json::json!({ "count": 101 }));
}

#[test]
fn handles_carry_the_entity_the_name_and_the_kind_and_run_directly() {
    let deposit: Operation<Account, i64, (), NoError> = Account::deposit;
    assert_eq!(
        (deposit.entity_name(), deposit.name(), deposit.kind()),
        ("Account", "deposit", OperationKind::Write)
    );
    assert!(Account::balance.is_read());
    let withdraw: Operation<Account, i64, i64, String> = Account::withdraw;
    let mut account = Account::default();
    let mut ctx = EntityContext::new(EntityId::of::<Account>("t"));
    deposit.run(&mut account, &mut ctx, 7).unwrap();
    assert_eq!(withdraw.run(&mut account, &mut ctx, 2), Ok(5));
    Account::transfer
        .run(&mut account, &mut ctx, ("u".into(), 1))
        .unwrap();
    assert_eq!(ctx.signals().len(), 1);
    assert_eq!(account.balance, 4);
}

#[test]
fn entity_ids_read_back_exactly_whatever_the_key() {
    for key in ["alice", "", "a@b", "@", "@@x@", "é 😀 \n\t", "@Account@bob"] {
        let id = EntityId::new("Account", key).unwrap();
        let text = id.to_string();
        assert_eq!(text, format!("@Account@{key}"));
        let back: EntityId = text.parse().unwrap();
        assert_eq!((back.name(), back.key()), ("Account", key));
    }
    assert_eq!(EntityId::new("", "k"), Err(EntityIdError::EmptyName));
    assert_eq!(
        EntityId::new("a@b", "k"),
        Err(EntityIdError::NameWithAt("a@b".into()))
    );
    for text in [
        "",
        "Account@alice",
        "@Account",
        "@@alice",
        "x@Account@alice",
    ] {
        assert_eq!(
            text.parse::<EntityId>(),
            Err(EntityIdError::NotAnEntityId(text.into())),
            "{text}"
        );
    }
    let mut ids = [
        EntityId::of::<Account>("b"),
        EntityId::of::<Counter>("a"),
        EntityId::of::<Account>("a"),
    ];
    ids.sort();
    let sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(sorted, ["@Account@a", "@Account@b", "@rate-counter@a"]);
}

/// Under clippy's `result_large_err` threshold (128 bytes), so users' functions returning
/// `Result<_, EntityError>` pass it.
#[test]
fn the_error_stays_small() {
    assert!(
        size_of::<EntityError>() < 128,
        "{}",
        size_of::<EntityError>()
    );
}
