//! The body walker of `#[orchestrator]` and `#[deterministic]`.
//!
//! It finds every hazard of `hazards.rs` anywhere in a body: nested blocks, closures,
//! async blocks, nested items, the arguments of macros, and through the `use ... as`
//! aliases declared in the body. It also rewrites each call that passes the context to a
//! helper, so that rustc checks the helper is `#[deterministic]` (DETERMINISM.md rule 17,
//! see `helper_calls.rs`). The arguments of `.side_effect(...)` are the escape hatch
//! (rule 19) and are not walked.

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::visit_mut::VisitMut;
use syn::{Attribute, Block, Expr, ExprCall, ExprMethodCall, Stmt};

use crate::context::Parameters;
use crate::errors::Errors;
use crate::hazards;
use crate::helper_calls::{self, HelperCall};
use crate::lock_scope;
use crate::macro_call::{self, Found, MacroArgs};
use crate::marker::checked_on_its_own;
use crate::scope::{Scope, import_site, use_leaves};
use crate::site::{MacroSite, MethodSite, PathSite, Site};

/// Checks `body` of `subject` ("orchestrator `checkout`"), whose parameters are `params`.
/// Returns the body with its helper calls rewritten, or an error for every hazard.
pub(crate) fn check(subject: &str, params: &Parameters, body: &Block) -> syn::Result<Block> {
    let mut walker = Walker {
        subject,
        scope: Scope::gather(params, body),
        errors: Errors::new(),
        frames: Vec::new(),
        calling: false,
        in_macro: 0,
        rewrites: 0,
    };
    lock_scope::check(subject, params, body, &mut walker.errors);
    let mut body = body.clone();
    walker.visit_block_mut(&mut body);
    walker.errors.finish(Some(body))
}

struct Walker<'s> {
    subject: &'s str,
    scope: Scope,
    errors: Errors,
    /// For each block being walked, the checks of the helpers called in it, to be put
    /// at its start (where everything the call can name is in scope too).
    frames: Vec<Vec<Stmt>>,
    /// The next path visited is the function of a call.
    calling: bool,
    /// Inside a macro's arguments, where a string literal may be a format string.
    in_macro: usize,
    /// Calls rewritten so far: whether a macro's arguments must be written back.
    rewrites: usize,
}

impl Walker<'_> {
    /// Reports the hazard at `site`, if it is one; returns whether it was.
    fn report(&mut self, site: &Site<'_>, tokens: impl ToTokens) -> bool {
        let Some(hazard) = hazards::check(site) else {
            return false;
        };
        self.errors.push(syn::Error::new_spanned(
            tokens,
            hazard.message(self.subject),
        ));
        true
    }

    /// The path as written and resolved through the body's aliases; none if it is a local
    /// variable or an alias whose import was already reported.
    fn path_site(
        &self,
        written: Vec<String>,
        leading_colon: bool,
        called: bool,
    ) -> Option<PathSite> {
        let first = written.first()?;
        if written.len() == 1 && self.scope.locals.contains(first) {
            return None;
        }
        let (resolved, alias) = match self.scope.aliases.get(first) {
            Some(alias) if !leading_colon => {
                if alias.reported {
                    return None;
                }
                let resolved = alias.target.iter().chain(&written[1..]).cloned().collect();
                let renamed = alias.target.last() != Some(first);
                (
                    resolved,
                    renamed.then(|| (first.clone(), alias.target.join("::"))),
                )
            }
            _ => (written.clone(), None),
        };
        Some(PathSite {
            written,
            resolved,
            alias,
            called,
        })
    }

    /// A qualified path, `<T>::f` or `<T as Trait>::f`, as the plain path `T::f`
    /// resolved through the body's aliases, written as the user wrote it; none if `T` is
    /// not a plain path (`<[u8]>::len`, `<&T>::f`).
    fn qualified_site(
        &self,
        qself: &syn::QSelf,
        path: &syn::Path,
        called: bool,
    ) -> Option<PathSite> {
        let syn::Type::Path(ty) = &*qself.ty else {
            return None;
        };
        if ty.qself.is_some() {
            return None;
        }
        let names = |path: &syn::Path| -> Vec<String> {
            path.segments
                .iter()
                .map(|s| s.ident.unraw().to_string())
                .collect()
        };
        let self_type = names(&ty.path);
        let trait_path = names(path);
        let position = qself.position.min(trait_path.len());
        let (as_trait, rest) = trait_path.split_at(position);
        let combined = self_type.iter().chain(rest).cloned().collect();
        let mut site = self.path_site(combined, ty.path.leading_colon.is_some(), called)?;
        let colons = if ty.path.leading_colon.is_some() {
            "::"
        } else {
            ""
        };
        let mut shown = format!("<{colons}{}", self_type.join("::"));
        if !as_trait.is_empty() {
            shown.push_str(" as ");
            shown.push_str(&as_trait.join("::"));
        }
        shown.push('>');
        site.written = std::iter::once(shown).chain(rest.iter().cloned()).collect();
        Some(site)
    }

    /// Walks a macro's arguments, writing them back if a call in them was rewritten.
    fn walk_macro_args(&mut self, mac: &mut syn::Macro, name: &str) {
        let before = self.rewrites;
        let mut args = MacroArgs::parse(name, mac.tokens.clone());
        if let MacroArgs::Tokens(tokens) = &args {
            let tokens = tokens.clone();
            macro_call::scan(tokens, &mut |found| self.found(found));
        }
        args.visit_mut(self);
        if self.rewrites != before {
            mac.tokens = args.to_token_stream();
        }
    }

    /// Something a token scan found in arguments that are not expressions.
    fn found(&mut self, found: Found) {
        match found {
            Found::Path {
                segments,
                tokens,
                called,
            } => {
                if let Some(site) = self.path_site(segments, false, called) {
                    self.report(&Site::Path(&site), tokens);
                }
            }
            Found::QualifiedPath { path, called } => {
                if let Some(qself) = &path.qself
                    && let Some(site) = self.qualified_site(qself, &path.path, called)
                {
                    self.report(&Site::Path(&site), &*path);
                }
            }
            Found::Method { name, args, tokens } => {
                let site = MethodSite {
                    name: name.unraw().to_string(),
                    args: usize::from(!args.is_empty()),
                    atomic_ordering: mentions_atomic_ordering(args),
                };
                self.report(&Site::Method(&site), tokens);
            }
            Found::Macro(mut mac) => self.visit_macro_mut(&mut mac),
            Found::Literal(literal) => {
                if let Ok(text) = syn::parse2::<syn::LitStr>(literal.to_token_stream()) {
                    self.report(&Site::FormatString(&text.value()), literal);
                }
            }
        }
    }
}

/// Whether arguments name an atomic memory ordering: `x.load(Ordering::SeqCst)`.
fn mentions_atomic_ordering(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ["SeqCst", "Relaxed", "Acquire", "Release", "AcqRel"]
            .iter()
            .any(|ordering| ident == ordering),
        TokenTree::Group(group) => mentions_atomic_ordering(group.stream()),
        _ => false,
    })
}

impl VisitMut for Walker<'_> {
    fn visit_block_mut(&mut self, block: &mut Block) {
        self.frames.push(Vec::new());
        syn::visit_mut::visit_block_mut(self, block);
        let checks = self.frames.pop().unwrap_or_default();
        // After the block's leading items, so they still come first (clippy's
        // `items_after_statements`); items are in scope in the whole block anyway.
        let items = block
            .stmts
            .iter()
            .take_while(|stmt| matches!(stmt, Stmt::Item(_)))
            .count();
        block.stmts.splice(items..items, checks);
    }

    // Attributes are not code: `#[allow(...)]` is no hazard.
    fn visit_attribute_mut(&mut self, _: &mut Attribute) {}

    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        let called = std::mem::take(&mut self.calling);
        let written = path
            .segments
            .iter()
            .map(|s| s.ident.unraw().to_string())
            .collect();
        if let Some(site) = self.path_site(written, path.leading_colon.is_some(), called) {
            self.report(&Site::Path(&site), &*path);
        }
        syn::visit_mut::visit_path_mut(self, path);
    }

    // `<T>::f` and `<T as Trait>::f` are checked as `T::f` (the trait's path is walked as
    // any path); the qualified self type is then walked as a type.
    fn visit_expr_path_mut(&mut self, node: &mut syn::ExprPath) {
        if let Some(qself) = &node.qself {
            let called = std::mem::take(&mut self.calling);
            if let Some(site) = self.qualified_site(qself, &node.path, called) {
                self.report(&Site::Path(&site), &*node);
            }
        }
        syn::visit_mut::visit_expr_path_mut(self, node);
    }

    fn visit_expr_call_mut(&mut self, node: &mut ExprCall) {
        self.calling = matches!(&*node.func, Expr::Path(_));
        self.visit_expr_mut(&mut node.func);
        self.calling = false;
        for arg in &mut node.args {
            self.visit_expr_mut(arg);
        }
        match helper_calls::check_call(node, &self.scope) {
            HelperCall::NotAHelper => {}
            HelperCall::Renamed => self.rewrites += 1,
            HelperCall::Checked(check) => {
                if let Some(frame) = self.frames.last_mut() {
                    frame.push(*check);
                }
            }
        }
    }

    fn visit_expr_method_call_mut(&mut self, node: &mut ExprMethodCall) {
        let name = node.method.unraw().to_string();
        let site = MethodSite {
            name: name.clone(),
            args: node.args.len(),
            atomic_ordering: mentions_atomic_ordering(node.args.to_token_stream()),
        };
        let (dot, method) = (&node.dot_token, &node.method);
        let mut tokens = quote!(#dot #method);
        node.paren_token
            .surround(&mut tokens, |inner| node.args.to_tokens(inner));
        self.report(&Site::Method(&site), tokens);

        self.visit_expr_mut(&mut node.receiver);
        if let Some(turbofish) = &mut node.turbofish {
            self.visit_angle_bracketed_generic_arguments_mut(turbofish);
        }
        // The escape hatch: what runs inside `side_effect` is recorded, not replayed.
        if name != "side_effect" {
            for arg in &mut node.args {
                self.visit_expr_mut(arg);
            }
        }
        if let HelperCall::Renamed = helper_calls::check_method_call(node, &self.scope) {
            self.rewrites += 1;
        }
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        let written: Vec<String> = mac
            .path
            .segments
            .iter()
            .map(|s| s.ident.unraw().to_string())
            .collect();
        let name = written.last().cloned().unwrap_or_default();
        let resolved = self
            .path_site(written.clone(), mac.path.leading_colon.is_some(), false)
            .map_or_else(|| written.clone(), |site| site.resolved);
        let site = MacroSite {
            written: written.join("::"),
            resolved,
            biased: macro_call::starts_biased(&mac.tokens),
        };
        let (path, bang) = (&mac.path, &mac.bang_token);
        self.report(&Site::Macro(&site), quote!(#path #bang));
        self.in_macro += 1;
        self.walk_macro_args(mac, &name);
        self.in_macro -= 1;
    }

    fn visit_lit_str_mut(&mut self, lit: &mut syn::LitStr) {
        if self.in_macro > 0 {
            self.report(&Site::FormatString(&lit.value()), &*lit);
        }
    }

    fn visit_expr_loop_mut(&mut self, node: &mut syn::ExprLoop) {
        let (label, token) = (&node.label, &node.loop_token);
        self.report(&Site::Loop(node), quote!(#label #token));
        syn::visit_mut::visit_expr_loop_mut(self, node);
    }

    fn visit_expr_cast_mut(&mut self, node: &mut syn::ExprCast) {
        let (token, ty) = (&node.as_token, &node.ty);
        self.report(&Site::Cast(node), quote!(#token #ty));
        syn::visit_mut::visit_expr_cast_mut(self, node);
    }

    fn visit_item_static_mut(&mut self, node: &mut syn::ItemStatic) {
        let (token, mutability, ident) = (&node.static_token, &node.mutability, &node.ident);
        // A static reported as such is not reported again for its type (`AtomicU64`).
        if !self.report(&Site::Static(node), quote!(#token #mutability #ident)) {
            syn::visit_mut::visit_item_static_mut(self, node);
        }
    }

    fn visit_item_use_mut(&mut self, node: &mut syn::ItemUse) {
        for leaf in use_leaves(&node.tree) {
            self.report(&Site::Path(&import_site(&leaf.path)), leaf.tokens);
        }
    }

    fn visit_item_fn_mut(&mut self, node: &mut syn::ItemFn) {
        if !checked_on_its_own(&node.attrs) {
            syn::visit_mut::visit_item_fn_mut(self, node);
        }
    }

    fn visit_item_impl_mut(&mut self, node: &mut syn::ItemImpl) {
        if !checked_on_its_own(&node.attrs) {
            syn::visit_mut::visit_item_impl_mut(self, node);
        }
    }

    fn visit_impl_item_fn_mut(&mut self, node: &mut syn::ImplItemFn) {
        if !checked_on_its_own(&node.attrs) {
            syn::visit_mut::visit_impl_item_fn_mut(self, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn ctx() -> Parameters {
        Parameters {
            context: vec!["ctx".into()],
            all: vec!["ctx".into()],
        }
    }

    fn messages(body: Block) -> Vec<String> {
        match check("orchestrator `f`", &ctx(), &body) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn rewritten(body: Block) -> String {
        let body = check("orchestrator `f`", &ctx(), &body).unwrap();
        quote!(#body).to_string()
    }

    #[test]
    fn finds_hazards_everywhere_in_the_body() {
        let all = messages(parse_quote!({
            let a = SystemTime::now();
            let f = || {
                let b = Instant::now();
            };
            let g = async { std::thread::sleep(d) };
            let s = format!("{}", Utc::now());
            let v = vec![rand::random::<u8>(); 3];
            tokio::select! { biased; _ = async { tokio::spawn(x) } => {} }
            tracing::info!(at = %OffsetDateTime::now_utc(), "x");
        }));
        let rules = [
            "`SystemTime::now()`",
            "`Instant::now()`",
            "`std::thread::sleep()`",
            "`Utc::now()`",
            "`rand::random()`",
            "`tokio::spawn()`",
            "`OffsetDateTime::now_utc()`",
        ];
        assert_eq!(all.len(), rules.len(), "{all:#?}");
        for (message, rule) in all.iter().zip(rules) {
            assert!(message.starts_with(rule), "{message} is not {rule}");
            assert!(message.contains("in orchestrator `f`"), "{message}");
        }
    }

    #[test]
    fn checks_qualified_paths_like_plain_ones() {
        let all = messages(parse_quote!({
            use std::time::SystemTime as Clock;
            let a = <std::time::SystemTime>::now();
            let b = <Clock>::now();
            let c = <Instant as Reading>::now();
            let d = <uuid::Uuid>::new_v4();
            let m = <BTreeMap<u32, u32>>::new();
            let v = <Vec<u8>>::with_capacity(3);
            let n = <[u8]>::len(&v);
            let z = <u64 as Default>::default();
            tracing::info!(at = %<std::time::SystemTime>::now(), "x");
            tracing::info!(small = %(a < b), "y");
        }));
        let rules = [
            "`<std::time::SystemTime>::now()`",
            "`<Clock>::now()` (`Clock` is `std::time::SystemTime`)",
            "`<Instant as Reading>::now()`",
            "`<uuid::Uuid>::new_v4()`",
            "`<std::time::SystemTime>::now()`",
        ];
        assert_eq!(all.len(), rules.len(), "{all:#?}");
        for (message, rule) in all.iter().zip(rules) {
            assert!(message.starts_with(rule), "{message} is not {rule}");
        }
    }

    #[test]
    fn follows_aliases_declared_in_the_body() {
        let all = messages(parse_quote!({
            use std::collections::HashMap as Map;
            use std::time::SystemTime as Clock;
            let now = Clock::now();
            let m: Map<u32, u32> = Map::new();
        }));
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(all[0].starts_with("`std::collections::HashMap` is not replay-safe"));
        assert!(all[1].starts_with("`Clock::now()` (`Clock` is `std::time::SystemTime`)"));
    }

    #[test]
    fn skips_the_escape_hatch_and_look_alikes() {
        let all = messages(parse_quote!({
            let t = ctx.side_effect(|| SystemTime::now());
            let now = 5;
            let d = Duration::from_secs(now);
            let m = BTreeMap::<u32, u32>::new();
            let s = "sleep for a while";
            let file: File = ctx.call(upload, s).await;
            let orders = client.fetch_orders();
            ctx.sleep(d).await;
        }));
        assert!(all.is_empty(), "{all:#?}");
    }

    #[test]
    fn rewrites_calls_that_pass_the_context() {
        let out = rewritten(parse_quote!({
            plan(&ctx, 1);
            helpers::plan(ctx.clone());
            worker.step(&ctx);
            Worker::build(&ctx);
            pure(1);
            ctx.call(activity, 1);
            Some(&ctx);
        }));
        assert_eq!(
            out.matches("use plan as NotMarkedDeterministic").count(),
            1,
            "{out}"
        );
        assert!(
            out.contains("use helpers :: plan as NotMarkedDeterministic"),
            "{out}"
        );
        assert!(
            out.contains("worker . step__needs_deterministic_attribute (& ctx)"),
            "{out}"
        );
        assert!(
            out.contains("Worker :: build__needs_deterministic_attribute (& ctx)"),
            "{out}"
        );
        assert!(
            out.contains("pure (1)") && out.contains("ctx . call (activity , 1)"),
            "{out}"
        );
        assert_eq!(out.matches("NotMarkedDeterministic >").count(), 2, "{out}");
    }
}
