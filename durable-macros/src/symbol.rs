//! The names the macros recognise in the user's code, as typed constants (after
//! serde_derive's `Symbol`): compared with an identifier of the syn tree, never with
//! printed tokens.

use std::fmt;

use syn::{Ident, Path};

/// A name the macros recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Symbol(&'static str);

/// The context an orchestrator and a `#[deterministic]` helper receive.
pub(crate) const ORCHESTRATION_CONTEXT: Symbol = Symbol("OrchestrationContext");
/// The context an activity receives.
pub(crate) const ACTIVITY_CONTEXT: Symbol = Symbol("ActivityContext");
/// The context an entity operation receives.
pub(crate) const ENTITY_CONTEXT: Symbol = Symbol("EntityContext");
/// `#[orchestrator]`.
pub(crate) const ORCHESTRATOR: Symbol = Symbol("orchestrator");
/// `#[activity]`.
pub(crate) const ACTIVITY: Symbol = Symbol("activity");
/// `#[deterministic]`.
pub(crate) const DETERMINISTIC: Symbol = Symbol("deterministic");

impl PartialEq<Symbol> for Ident {
    fn eq(&self, symbol: &Symbol) -> bool {
        self == symbol.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Whether `path` ends in `symbol`: `OrchestrationContext`,
/// `durable_core::OrchestrationContext`, `durable::deterministic`.
pub(crate) fn ends_in(path: &Path, symbol: Symbol) -> bool {
    path.segments
        .last()
        .is_some_and(|last| last.ident == symbol)
}
