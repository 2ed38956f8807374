//! The typed handle of one entity operation, as `#[entity]` generates it.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entity::context::EntityContext;
use crate::entity::{Applied, Entity};
use crate::payload;

/// An operation of entity `E`, taking input `I` and returning `O` or the error `Er`:
/// `Account::deposit` is one.
///
/// `#[entity]` makes one for each operation of the `impl` block, an associated const of
/// the same name, so a call site names the operation by a value and never by a string,
/// and a wrong input type is a rustc error there:
///
/// ```
/// use durable_core::{Entity, EntityContext, Operation, entity};
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Account {
///     balance: i64,
/// }
///
/// #[entity]
/// impl Account {
///     pub fn deposit(&mut self, amount: i64) {
///         self.balance += amount;
///     }
///     pub fn balance(&self) -> i64 {
///         self.balance
///     }
/// }
///
/// let deposit: Operation<Account, i64, ()> = Account::deposit;
/// assert_eq!((deposit.name(), deposit.is_read()), ("deposit", false));
/// assert!(Account::balance.is_read());
/// assert_eq!(deposit.entity_name(), "Account");
/// ```
///
/// An operation that returns `T` (or nothing, `()`) has the error [`NoError`]; one that
/// returns `Result<T, E>` has `O = T`, `Er = E`. The input, output and error are stored
/// as JSON, so they implement serde's `Serialize` and `DeserializeOwned` (and the error
/// `Display`): the handle's constructor requires it, so a type that does not is a rustc
/// error on the operation's signature.
pub struct Operation<E, I, O, Er = NoError> {
    name: &'static str,
    kind: OperationKind,
    /// The operation's body, over a state already decoded: the read-only ones take it by
    /// `&mut` here too, and reborrow it shared.
    body: fn(&mut E, &mut EntityContext, I) -> Result<O, Er>,
    /// [`apply`] for these types, made where their serde bounds are checked (in
    /// [`Operation::__new`]), so the generated dispatch needs none of its own and a type
    /// without serde's traits is reported once.
    json: Json<E, I, O, Er>,
}

/// [`apply`] for one operation's types.
type Json<E, I, O, Er> =
    fn(Operation<E, I, O, Er>, &mut E, &mut EntityContext, &[u8]) -> Result<Vec<u8>, Applied>;

/// Whether an operation may change its entity's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// `&mut self`: may change the state, and send signals.
    Write,
    /// `&self`: reads the state and never changes it (Restate's shared handlers); it
    /// cannot send signals either (it takes `&EntityContext`, whose `signal` needs
    /// `&mut`).
    Read,
}

/// An operation's name and kind, without its types: what [`Entity::OPERATIONS`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OperationInfo {
    /// The operation's name: the method's.
    pub name: &'static str,
    /// Whether it may change the state.
    pub kind: OperationKind,
}

/// The error of an operation that cannot fail (one that returns `T`, not
/// `Result<T, E>`): no value has this type. Serde's traits are implemented for it, which
/// they are not for `std::convert::Infallible`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NoError {}

impl fmt::Display for NoError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for NoError {}

impl<E, I, O, Er> Operation<E, I, O, Er>
where
    E: Entity,
    I: Serialize + DeserializeOwned,
    O: Serialize + DeserializeOwned,
    Er: Serialize + DeserializeOwned + fmt::Display,
{
    /// The handle `#[entity]` generates: the operation `name`, of `kind`, running `body`.
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        kind: OperationKind,
        body: fn(&mut E, &mut EntityContext, I) -> Result<O, Er>,
    ) -> Self {
        Operation {
            name,
            kind,
            body,
            json: apply::<E, I, O, Er>,
        }
    }
}

impl<E, I, O, Er> Operation<E, I, O, Er> {
    /// The operation's name, as messages to the entity carry it: the method's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether it may change the state.
    pub const fn kind(&self) -> OperationKind {
        self.kind
    }

    /// Whether it is a read (`&self`), which never changes the state.
    pub const fn is_read(&self) -> bool {
        matches!(self.kind, OperationKind::Read)
    }

    /// Its name and kind.
    pub const fn info(&self) -> OperationInfo {
        OperationInfo {
            name: self.name,
            kind: self.kind,
        }
    }

    /// Runs the operation's body on `state` directly, as a unit test of the entity's
    /// logic does: no JSON, no rollback (see [`Entity::dispatch`] for those). `ctx`
    /// collects the signals it sends ([`EntityContext::signals`]).
    ///
    /// # Errors
    ///
    /// The operation's own error, if it returned one.
    pub fn run(&self, state: &mut E, ctx: &mut EntityContext, input: I) -> Result<O, Er> {
        (self.body)(state, ctx, input)
    }

    /// Runs it over JSON (see [`apply`]): what the `apply` that `#[entity]` generates
    /// calls for each operation.
    #[doc(hidden)]
    pub fn __apply(
        self,
        state: &mut E,
        ctx: &mut EntityContext,
        input: &[u8],
    ) -> Result<Vec<u8>, Applied> {
        (self.json)(self, state, ctx, input)
    }
}

impl<E: Entity, I, O, Er> Operation<E, I, O, Er> {
    /// The name of the entity type it operates on ([`Entity::NAME`]).
    pub fn entity_name(&self) -> &'static str {
        E::NAME
    }
}

impl<E, I, O, Er> Clone for Operation<E, I, O, Er> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E, I, O, Er> Copy for Operation<E, I, O, Er> {}

impl<E, I, O, Er> fmt::Debug for Operation<E, I, O, Er> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("entity", &std::any::type_name::<E>())
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Runs `operation` over JSON: decodes `input`, runs the body, encodes the output or the
/// error.
fn apply<E, I, O, Er>(
    operation: Operation<E, I, O, Er>,
    state: &mut E,
    ctx: &mut EntityContext,
    input: &[u8],
) -> Result<Vec<u8>, Applied>
where
    I: DeserializeOwned,
    O: Serialize,
    Er: Serialize + fmt::Display,
{
    let input: I = payload::decode(input).map_err(Applied::UndecodableInput)?;
    match operation.run(state, ctx, input) {
        Ok(output) => payload::encode(&output).map_err(Applied::UnencodableOutput),
        Err(error) => Err(Applied::Returned {
            payload: payload::encode(&error).unwrap_or_default(),
            message: error.to_string(),
        }),
    }
}
