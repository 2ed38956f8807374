//! The activities, orchestrators and entities an orchestrator's body calls, so that the
//! runtime can tell at start which of them are not registered (`Orchestrator::callees`).
//!
//! A call is found where the body writes it on the context: `ctx.call(handle, ..)`,
//! `ctx.call_with_retry(handle, ..)`, `ctx.sub_orchestration(handle, ..)`,
//! `ctx.sub_orchestration_with_id(handle, ..)`, and an entity operation's handle passed to
//! `ctx.call_entity`, `ctx.signal_entity` or `ctx.signal_entity_at`, in closures, async blocks and macro
//! arguments too. The handle is named again in the generated `callees()`, which lives
//! beside the function, not in it: a handle is listed only when its path means the same
//! there (not a local binding, not an item or `use` of the body), and calls under a
//! `#[cfg]` keep it. Calls made in helpers, or through a handle held in a variable, are
//! not listed; they are still checked when an instance reaches them.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Attribute, Block, Expr, ExprPath, Item, UseTree};

use crate::context::Parameters;
use crate::macro_call::MacroArgs;
use crate::scope::Scope;

/// What kind of handle a context method takes first.
#[derive(Clone, Copy)]
enum Callee {
    Activity,
    Orchestrator,
    Entity,
}

/// One call found: the handle's path, its kind, and the `#[cfg]`s around the call.
struct Found {
    kind: Callee,
    path: ExprPath,
    cfgs: Vec<Attribute>,
}

/// The statements of the generated `callees()` body that list what `body` calls: each
/// pushes one `::durable_core::Callee` onto `callees`. `params` are the orchestrator's.
pub(crate) fn list(params: &Parameters, body: &Block) -> TokenStream {
    let mut finder = Finder {
        scope: Scope::gather(params, body),
        declared: BTreeSet::new(),
        glob: false,
        cfgs: Vec::new(),
        found: Vec::new(),
    };
    Declared::gather(body, &mut finder.declared, &mut finder.glob);
    let mut body = body.clone();
    finder.visit_block_mut(&mut body);
    let mut seen = BTreeSet::new();
    let mut pushes = TokenStream::new();
    for Found { kind, path, cfgs } in finder.found {
        let key = format!("{} {}", quote!(#(#cfgs)*), path.to_token_stream());
        if !seen.insert(key) {
            continue;
        }
        let method = match kind {
            Callee::Activity => quote!(activity_callee),
            Callee::Orchestrator => quote!(orchestrator_callee),
            Callee::Entity => quote!(entity_callee),
        };
        let span = path.span();
        pushes.extend(quote_spanned! {span=>
            #(#cfgs)*
            callees.extend((&::durable_core::__private::Probe(#path)).#method());
        });
    }
    pushes
}

struct Finder {
    scope: Scope,
    /// The names items and `use`s of the body declare: not visible beside the function.
    declared: BTreeSet<String>,
    /// The body has a glob `use`: any name may come from it.
    glob: bool,
    /// The `#[cfg]`s of the expressions and statements being walked.
    cfgs: Vec<Attribute>,
    found: Vec<Found>,
}

impl Finder {
    /// Whether `path` names the same thing beside the function as in its body.
    fn resolves_outside(&self, path: &ExprPath) -> bool {
        if path.qself.is_some() || !path.attrs.is_empty() {
            return false;
        }
        if path.path.leading_colon.is_some() {
            return true;
        }
        let Some(first) = path.path.segments.first() else {
            return false;
        };
        let first = first.ident.unraw().to_string();
        match first.as_str() {
            "crate" | "super" | "self" => true,
            "Self" => false,
            _ => {
                !self.glob
                    && !self.declared.contains(&first)
                    && !self.scope.locals.contains(&first)
                    && !self.scope.aliases.contains_key(&first)
            }
        }
    }

    /// Walks `visit` with the `#[cfg]`s of `attrs` in force.
    fn with_cfgs(&mut self, attrs: &[Attribute], visit: impl FnOnce(&mut Self)) {
        let before = self.cfgs.len();
        self.cfgs
            .extend(attrs.iter().filter(|a| a.path().is_ident("cfg")).cloned());
        visit(self);
        self.cfgs.truncate(before);
    }
}

impl VisitMut for Finder {
    fn visit_expr_method_call_mut(&mut self, node: &mut syn::ExprMethodCall) {
        let kind = match node.method.to_string().as_str() {
            "call" | "call_with_retry" => Some(Callee::Activity),
            "sub_orchestration" | "sub_orchestration_with_id" => Some(Callee::Orchestrator),
            "call_entity" | "signal_entity" | "signal_entity_at" => Some(Callee::Entity),
            _ => None,
        };
        if let Some(kind) = kind
            && self.scope.is_context(&node.receiver)
            && let Some(Expr::Path(path)) = node.args.first()
            && self.resolves_outside(path)
        {
            self.found.push(Found {
                kind,
                path: path.clone(),
                cfgs: self.cfgs.clone(),
            });
        }
        syn::visit_mut::visit_expr_method_call_mut(self, node);
    }

    fn visit_expr_mut(&mut self, node: &mut Expr) {
        let attrs = expr_attrs(node).to_vec();
        self.with_cfgs(&attrs, |this| syn::visit_mut::visit_expr_mut(this, node));
    }

    fn visit_local_mut(&mut self, node: &mut syn::Local) {
        let attrs = node.attrs.clone();
        self.with_cfgs(&attrs, |this| syn::visit_mut::visit_local_mut(this, node));
    }

    fn visit_arm_mut(&mut self, node: &mut syn::Arm) {
        let attrs = node.attrs.clone();
        self.with_cfgs(&attrs, |this| syn::visit_mut::visit_arm_mut(this, node));
    }

    fn visit_field_value_mut(&mut self, node: &mut syn::FieldValue) {
        let attrs = node.attrs.clone();
        self.with_cfgs(&attrs, |this| {
            syn::visit_mut::visit_field_value_mut(this, node);
        });
    }

    fn visit_macro_mut(&mut self, node: &mut syn::Macro) {
        let name = node
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        MacroArgs::parse(&name, node.tokens.clone()).visit_mut(self);
    }

    fn visit_stmt_macro_mut(&mut self, node: &mut syn::StmtMacro) {
        let attrs = node.attrs.clone();
        self.with_cfgs(&attrs, |this| this.visit_macro_mut(&mut node.mac));
    }

    /// An item in the body is code of its own, not this orchestrator's calls.
    fn visit_item_mut(&mut self, _: &mut Item) {}
}

/// The attributes of an expression (`#[cfg(..)] ctx.call(..)`), for the kinds that are
/// written with them.
fn expr_attrs(expr: &Expr) -> &[Attribute] {
    match expr {
        Expr::Array(e) => &e.attrs,
        Expr::Assign(e) => &e.attrs,
        Expr::Async(e) => &e.attrs,
        Expr::Await(e) => &e.attrs,
        Expr::Block(e) => &e.attrs,
        Expr::Call(e) => &e.attrs,
        Expr::Closure(e) => &e.attrs,
        Expr::ForLoop(e) => &e.attrs,
        Expr::If(e) => &e.attrs,
        Expr::Let(e) => &e.attrs,
        Expr::Loop(e) => &e.attrs,
        Expr::Macro(e) => &e.attrs,
        Expr::Match(e) => &e.attrs,
        Expr::MethodCall(e) => &e.attrs,
        Expr::Paren(e) => &e.attrs,
        Expr::Return(e) => &e.attrs,
        Expr::Struct(e) => &e.attrs,
        Expr::Try(e) => &e.attrs,
        Expr::Tuple(e) => &e.attrs,
        Expr::Unsafe(e) => &e.attrs,
        Expr::While(e) => &e.attrs,
        _ => &[],
    }
}

/// The names a body's items and `use`s declare, at any depth (a block's items are not
/// visible beside the function either).
struct Declared<'a> {
    names: &'a mut BTreeSet<String>,
    glob: &'a mut bool,
}

impl Declared<'_> {
    fn gather(body: &Block, names: &mut BTreeSet<String>, glob: &mut bool) {
        let mut body = body.clone();
        Declared { names, glob }.visit_block_mut(&mut body);
    }

    fn declare(&mut self, ident: &syn::Ident) {
        self.names.insert(ident.unraw().to_string());
    }
}

impl VisitMut for Declared<'_> {
    fn visit_item_mut(&mut self, item: &mut Item) {
        match item {
            Item::Const(i) => self.declare(&i.ident),
            Item::Enum(i) => self.declare(&i.ident),
            Item::ExternCrate(i) => self.declare(i.rename.as_ref().map_or(&i.ident, |r| &r.1)),
            Item::Fn(i) => self.declare(&i.sig.ident),
            Item::Macro(i) => {
                if let Some(ident) = &i.ident {
                    self.declare(ident);
                }
            }
            Item::Mod(i) => self.declare(&i.ident),
            Item::Static(i) => self.declare(&i.ident),
            Item::Struct(i) => self.declare(&i.ident),
            Item::Trait(i) => self.declare(&i.ident),
            Item::TraitAlias(i) => self.declare(&i.ident),
            Item::Type(i) => self.declare(&i.ident),
            Item::Union(i) => self.declare(&i.ident),
            Item::Use(i) => self.visit_use_tree_mut(&mut i.tree),
            _ => {}
        }
        // Items declared inside an item's own body (a nested fn's) are not seen by the
        // orchestrator's body; they are skipped with the item by the finder anyway.
    }

    fn visit_use_tree_mut(&mut self, tree: &mut UseTree) {
        match tree {
            UseTree::Path(p) => self.visit_use_tree_mut(&mut p.tree),
            UseTree::Name(n) => self.declare(&n.ident),
            UseTree::Rename(r) => self.declare(&r.rename),
            UseTree::Glob(_) => *self.glob = true,
            UseTree::Group(g) => g.items.iter_mut().for_each(|t| self.visit_use_tree_mut(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listed handles of `body`, with `ctx` the context: `A:path` or `O:path`, with
    /// their `#[cfg]`s.
    fn listed(body: TokenStream) -> Vec<String> {
        let body: Block = syn::parse2(quote!({ #body })).unwrap();
        let params = Parameters {
            context: vec!["ctx".into()],
            all: vec!["ctx".into(), "input".into()],
        };
        let out = list(&params, &body);
        let file: syn::File = syn::parse2(quote!(fn f() { #out })).unwrap();
        let syn::Item::Fn(f) = &file.items[0] else {
            unreachable!()
        };
        f.block
            .stmts
            .iter()
            .map(|stmt| {
                let text = stmt.to_token_stream().to_string();
                let kind = if text.contains("activity_callee") {
                    "A"
                } else {
                    "O"
                };
                let inner = text
                    .split("Probe (")
                    .nth(1)
                    .and_then(|rest| rest.split(")) .").next())
                    .unwrap()
                    .replace(' ', "");
                let cfg = text
                    .starts_with("# [cfg")
                    .then(|| text.split(']').next().unwrap().replace(' ', ""));
                match cfg {
                    Some(cfg) => format!("{cfg}] {kind}:{inner}"),
                    None => format!("{kind}:{inner}"),
                }
            })
            .collect()
    }

    #[test]
    fn lists_each_call_form_once() {
        let found = listed(quote! {
            let a = ctx.call(step, input).await?;
            let b = ctx.call_with_retry(crate::acts::pay, a, policy).await?;
            let c = ctx.clone().sub_orchestration(child, b).await?;
            let d = (&ctx).sub_orchestration_with_id(super::other, "id", c).await?;
            let e = ctx.call(step, d).await?;
            let all = ctx.join_all((0..3).map(|i| ctx.call(fan, i)).collect()).await;
            let v = vec![ctx.call(in_macro, 1)];
            #[cfg(feature = "x")]
            let f = ctx.call(optional, e).await?;
            Ok(f)
        });
        assert_eq!(
            found,
            [
                "A:step",
                "A:crate::acts::pay",
                "O:child",
                "O:super::other",
                "A:fan",
                "A:in_macro",
                "#[cfg(feature=\"x\")] A:optional",
            ]
        );
    }

    #[test]
    fn skips_what_does_not_resolve_beside_the_function() {
        let found = listed(quote! {
            // A local binding, a closure parameter, an input.
            let held = step;
            ctx.call(held, 1).await?;
            let calls = [1].map(|handle| ctx.call(handle, 1));
            ctx.call(input, 1).await?;
            // An item and a `use` of the body.
            #[activity]
            async fn inner(ctx: ActivityContext, n: u64) -> Result<u64, String> { Ok(n) }
            use crate::acts::pay as charge;
            ctx.call(inner, 1).await?;
            ctx.call(charge, 1).await?;
            // Not the context.
            other.call(step, 1);
            // Qualified with a self type.
            ctx.call(<T>::X, 1).await?;
            Ok(())
        });
        assert!(found.is_empty(), "{found:?}");
        let with_glob = listed(quote! {
            use crate::acts::*;
            ctx.call(step, 1).await?;
            ctx.call(crate::acts::pay, 1).await?;
        });
        assert_eq!(with_glob, ["A:crate::acts::pay"]);
    }
}
