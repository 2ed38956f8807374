//! The calls in a checked body that pass the context to a function (DETERMINISM.md
//! rule 17): which of them call a helper, and what each becomes so that rustc checks
//! the helper is `#[deterministic]` (the markers are in `marker.rs`).
//!
//! Calls that only hold the context are not helper calls: constructors (`Some(ctx)`),
//! smart pointers (`Arc::new(ctx)`), collections (`v.push(ctx)`), the context's own
//! methods and associated functions, a closure held in a local, and another
//! orchestrator's `run`, which its own `#[orchestrator]` checks.

use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprCall, ExprMethodCall, Stmt};

use crate::marker::{free_fn_check, twin_ident};
use crate::scope::Scope;
use crate::symbol::ORCHESTRATION_CONTEXT;

/// What a call became.
pub(crate) enum HelperCall {
    /// Not a call that passes the context to a helper: left as written.
    NotAHelper,
    /// A method or an associated function, renamed to its twin: the call is the check.
    Renamed,
    /// A free function: this statement, put at the start of the block, checks it.
    Checked(Box<Stmt>),
}

/// A call `f(.., ctx, ..)`: a free function gets a check for the start of the
/// block; an associated function is renamed to the twin `#[deterministic]` generates.
pub(crate) fn check_call(node: &mut ExprCall, scope: &Scope) -> HelperCall {
    if !node.args.iter().any(|arg| scope.is_context(arg)) {
        return HelperCall::NotAHelper;
    }
    // A closure or a fn pointer held in a field: not a named helper.
    let Expr::Path(callee) = &mut *node.func else {
        return HelperCall::NotAHelper;
    };
    let names: Vec<String> = callee
        .path
        .segments
        .iter()
        .map(|s| s.ident.unraw().to_string())
        .collect();
    let n = names.len();
    let by_value = |arg: &Expr| !matches!(arg, Expr::Reference(_));
    if (callee.qself.is_none() && n == 1 && scope.locals.contains(&names[0]))
        || passes_the_context_along(&names)
        || (n >= 2 && callee.path.segments[n - 2].ident == ORCHESTRATION_CONTEXT)
        // `other_orchestrator::run(ctx, input)`: checked by its own `#[orchestrator]`.
        || (names[n - 1] == "run" && node.args.len() == 2 && by_value(&node.args[0]))
    {
        return HelperCall::NotAHelper;
    }
    let associated = callee.qself.is_some()
        || (n >= 2 && {
            let owner = &callee.path.segments[n - 2];
            owner.ident == "Self"
                || owner.ident.to_string().starts_with(char::is_uppercase)
                || !owner.arguments.is_none()
        });
    if associated {
        if let Some(qself) = &mut callee.qself {
            // `<T as Trait>::f` becomes `<T>::f`: the twin is an inherent method.
            let rest: Punctuated<_, _> = callee
                .path
                .segments
                .iter()
                .skip(qself.position)
                .cloned()
                .collect();
            callee.path.segments = rest;
            callee.path.leading_colon = Some(Default::default());
            qself.position = 0;
            qself.as_token = None;
        }
        let last = callee
            .path
            .segments
            .last_mut()
            .expect("a path has a segment");
        last.ident = twin_ident(&last.ident);
        HelperCall::Renamed
    } else {
        HelperCall::Checked(Box::new(free_fn_check(&callee.path)))
    }
}

/// A method call `x.f(.., ctx, ..)` on something other than the context: renamed to the
/// twin, unless the method only stores the context.
pub(crate) fn check_method_call(node: &mut ExprMethodCall, scope: &Scope) -> HelperCall {
    if scope.is_context(&node.receiver)
        || PASSES_THE_CONTEXT_ALONG.contains(&node.method.unraw().to_string().as_str())
        || !node.args.iter().any(|arg| scope.is_context(arg))
    {
        return HelperCall::NotAHelper;
    }
    node.method = twin_ident(&node.method);
    HelperCall::Renamed
}

/// Calls that take the context but only hold it: constructors (`Some(ctx)`,
/// `Wrapper(ctx)`), `Arc::new(ctx)`, `drop(ctx)`, `mem::replace(..)`.
fn passes_the_context_along(names: &[String]) -> bool {
    let n = names.len();
    let last = names[n - 1].as_str();
    let owner = (n >= 2).then(|| names[n - 2].as_str());
    last.starts_with(char::is_uppercase)
        || (["drop", "identity", "forget", "take", "replace", "swap"].contains(&last)
            && owner.is_none_or(|owner| owner == "mem" || owner == "convert"))
        || (["new", "pin", "from"].contains(&last)
            && owner.is_some_and(|owner| {
                [
                    "Box", "Arc", "Rc", "Pin", "Cell", "RefCell", "Mutex", "RwLock", "Option",
                ]
                .contains(&owner)
            }))
}

/// Methods that store the context in a collection or slot rather than use it.
const PASSES_THE_CONTEXT_ALONG: [&str; 9] = [
    "push",
    "push_back",
    "push_front",
    "insert",
    "extend",
    "replace",
    "set",
    "get_or_insert",
    "clone_from",
];
