//! Which binding is the orchestration context: the one rule `#[orchestrator]` and
//! `#[deterministic]` share, for the parameters and for the expressions of a body.
//!
//! Types are recognised by their syn structure, a path whose last segment is the
//! context type's name (a [`Symbol`]), never by comparing printed tokens:
//! `OrchestrationContext`, `durable_core::OrchestrationContext`, and either behind
//! references.

use syn::ext::IdentExt;
use syn::visit::Visit;
use syn::{Expr, Pat, PatType, Type};

use crate::symbol::{self, ORCHESTRATION_CONTEXT, Symbol};

/// Whether `ty` is the type `symbol`, by value or behind references (`&T`, `&mut T`).
pub(crate) fn is_type(ty: &Type, symbol: Symbol) -> bool {
    match ty {
        Type::Group(group) => is_type(&group.elem, symbol),
        Type::Paren(paren) => is_type(&paren.elem, symbol),
        Type::Reference(reference) => is_type(&reference.elem, symbol),
        Type::Path(path) => path.qself.is_none() && symbol::ends_in(&path.path, symbol),
        _ => false,
    }
}

/// The function whose parameters are read: the context's place differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// An `#[orchestrator]`: the first parameter is the context.
    Orchestrator,
    /// A `#[deterministic]` helper: any parameter may be the context.
    Helper,
}

/// The names a function's parameters bind, and which of them are the context.
#[derive(Debug, Default)]
pub(crate) struct Parameters {
    /// The bindings that are the orchestration context.
    pub(crate) context: Vec<String>,
    /// Every name the parameters bind, the context's included.
    pub(crate) all: Vec<String>,
}

impl Parameters {
    /// The rule. A parameter is the context when it is a plain binding (`ctx`,
    /// `mut ctx`) and either its type is `OrchestrationContext` (see [`is_type`]) or it
    /// is an orchestrator's first parameter: the signature rules put the context there
    /// and rustc holds it to the type, however the type is spelled (an alias included).
    /// A helper's binding also holds the context when its type wraps it
    /// (`Option<&OrchestrationContext>`, `Arc<OrchestrationContext>`), a tuple pattern's
    /// bindings each by their own element type (`(ctx, n): (&OrchestrationContext, u32)`).
    pub(crate) fn of<'a>(owner: Owner, params: impl IntoIterator<Item = &'a PatType>) -> Self {
        let mut parameters = Parameters::default();
        for (position, param) in params.into_iter().enumerate() {
            if let Pat::Ident(binding) = &*param.pat
                && ((owner == Owner::Orchestrator && position == 0)
                    || is_type(&param.ty, ORCHESTRATION_CONTEXT))
            {
                parameters.context.push(binding.ident.unraw().to_string());
            } else if owner == Owner::Helper {
                holders(&param.pat, &param.ty, &mut parameters.context);
            }
            Bindings(&mut parameters.all).visit_pat(&param.pat);
        }
        parameters
    }
}

/// The bindings of `pat` (of type `ty`) that hold the context: a plain binding whose type
/// names `OrchestrationContext` anywhere, and in a tuple pattern of a tuple type, each
/// element by its own type.
fn holders(pat: &Pat, ty: &Type, context: &mut Vec<String>) {
    match (pat, ty) {
        (_, Type::Group(group)) => holders(pat, &group.elem, context),
        (_, Type::Paren(paren)) => holders(pat, &paren.elem, context),
        (Pat::Paren(inner), _) => holders(&inner.pat, ty, context),
        (Pat::Ident(binding), _) if binding.subpat.is_none() && names_context(ty) => {
            context.push(binding.ident.unraw().to_string());
        }
        (Pat::Tuple(pats), Type::Tuple(types)) if pats.elems.len() == types.elems.len() => {
            for (pat, ty) in pats.elems.iter().zip(&types.elems) {
                holders(pat, ty, context);
            }
        }
        _ => {}
    }
}

/// Whether `ty` names the context type anywhere (`Option<&OrchestrationContext>`).
fn names_context(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            self.0 |= symbol::ends_in(path, ORCHESTRATION_CONTEXT);
            syn::visit::visit_path(self, path);
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// Collects the names a pattern binds.
struct Bindings<'a>(&'a mut Vec<String>);

impl<'ast> Visit<'ast> for Bindings<'_> {
    fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
        self.0.push(node.ident.unraw().to_string());
        syn::visit::visit_pat_ident(self, node);
    }
}

/// Whether `expr` is the context binding itself: one of `names` (`ctx`), maybe in
/// parentheses or borrowed (`(ctx)`, `&ctx`, `&mut ctx`).
pub(crate) fn is_binding(expr: &Expr, names: &dyn Fn(&str) -> bool) -> bool {
    match expr {
        Expr::Paren(inner) => is_binding(&inner.expr, names),
        Expr::Group(inner) => is_binding(&inner.expr, names),
        Expr::Reference(inner) => is_binding(&inner.expr, names),
        Expr::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .get_ident()
                    .is_some_and(|ident| names(&ident.unraw().to_string()))
        }
        _ => false,
    }
}

/// Whether `expr` is the context binding (see [`is_binding`]) or a copy of it:
/// `ctx.clone()`, `ctx.to_owned()`, `(&ctx).clone()`.
pub(crate) fn is_binding_or_copy(expr: &Expr, names: &dyn Fn(&str) -> bool) -> bool {
    match expr {
        Expr::Paren(inner) => is_binding_or_copy(&inner.expr, names),
        Expr::Group(inner) => is_binding_or_copy(&inner.expr, names),
        Expr::Reference(inner) => is_binding_or_copy(&inner.expr, names),
        Expr::MethodCall(call) => {
            call.args.is_empty()
                && (call.method == "clone" || call.method == "to_owned")
                && is_binding_or_copy(&call.receiver, names)
        }
        other => is_binding(other, names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::ACTIVITY_CONTEXT;
    use syn::{ItemFn, parse_quote};

    fn parameters(owner: Owner, item: ItemFn) -> (Vec<String>, Vec<String>) {
        let typed = item.sig.inputs.iter().filter_map(|arg| match arg {
            syn::FnArg::Typed(param) => Some(param),
            syn::FnArg::Receiver(_) => None,
        });
        let Parameters { context, all } = Parameters::of(owner, typed);
        (context, all)
    }

    #[test]
    fn finds_a_helpers_context_by_its_type() {
        let (context, all) = parameters(
            Owner::Helper,
            parse_quote! {
                fn plan(
                    &self,
                    n: u32,
                    r#ctx: &durable_core::OrchestrationContext,
                    mut owned: OrchestrationContext,
                    (a, b): (u32, Option<&OrchestrationContext>),
                    other: &ActivityContext,
                ) {}
            },
        );
        assert_eq!(context, ["ctx", "owned", "b"]);
        assert_eq!(all, ["n", "ctx", "owned", "a", "b", "other"]);
    }

    /// As before the restructure: a helper's binding whose type wraps the context holds
    /// it, so passing it on to another function asks for `#[deterministic]` there too.
    #[test]
    fn a_helpers_wrapped_context_is_the_context() {
        let (context, _) = parameters(
            Owner::Helper,
            parse_quote! {
                fn plan(
                    maybe: Option<&OrchestrationContext>,
                    shared: std::sync::Arc<durable_core::OrchestrationContext>,
                    (ctx, n): (&OrchestrationContext, u32),
                    Wrapper(inner): Wrapper,
                    count: u32,
                ) {}
            },
        );
        for name in ["maybe", "shared", "ctx"] {
            assert!(context.iter().any(|c| c == name), "{name} in {context:?}");
        }
        assert!(!context.iter().any(|c| c == "count"), "{context:?}");
    }

    #[test]
    fn takes_an_orchestrators_first_parameter_however_its_type_is_spelled() {
        let (context, all) = parameters(
            Owner::Orchestrator,
            parse_quote! {
                async fn f(context: Ctx, (a, b): (u32, u32)) -> Result<(), String> {}
            },
        );
        assert_eq!(context, ["context"]);
        assert_eq!(all, ["context", "a", "b"]);
        let (context, _) = parameters(
            Owner::Orchestrator,
            parse_quote!(
                async fn f(_: OrchestrationContext, n: u32) -> Result<(), String> {}
            ),
        );
        assert!(context.is_empty());
    }

    #[test]
    fn tells_the_binding_from_copies_and_other_expressions() {
        let names = |name: &str| name == "ctx";
        let expr = |text: Expr| (is_binding(&text, &names), is_binding_or_copy(&text, &names));
        assert_eq!(expr(parse_quote!(ctx)), (true, true));
        assert_eq!(expr(parse_quote!(&mut (ctx))), (true, true));
        assert_eq!(expr(parse_quote!(ctx.clone())), (false, true));
        assert_eq!(expr(parse_quote!((&ctx).to_owned())), (false, true));
        assert_eq!(expr(parse_quote!(self.ctx)), (false, false));
        assert_eq!(expr(parse_quote!(ctx.clone_with(1))), (false, false));
        assert_eq!(expr(parse_quote!(other)), (false, false));
    }

    #[test]
    fn recognises_the_type_by_its_path() {
        let ty = |ty: Type| is_type(&ty, ORCHESTRATION_CONTEXT);
        assert!(ty(parse_quote!(&&mut ::durable_core::OrchestrationContext)));
        assert!(!ty(parse_quote!(Arc<OrchestrationContext>)));
        assert!(!ty(parse_quote!(<T as Has>::OrchestrationContext)));
        assert!(!ty(parse_quote!(ActivityContext)));
        assert!(is_type(&parse_quote!(&ActivityContext), ACTIVITY_CONTEXT));
    }
}
