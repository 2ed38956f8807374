//! Gives `ctx.continue_as_new(input)` in an orchestrator's body the orchestrator's own
//! input type.
//!
//! `OrchestrationContext::continue_as_new` is generic over its input: the context does not
//! know which orchestrator it runs. Left to inference, `ctx.continue_as_new(1)` in an
//! orchestrator taking `u32` encodes an `i32`, a value of another type than the next
//! generation reads (a negative one then stalls it; when payloads were postcard, `1` was
//! read back as `2_u32`, without an error). The next
//! generation of an orchestrator always takes that orchestrator's input, so the macro
//! names it: `ctx.continue_as_new(args)` becomes `ctx.continue_as_new::<Input, _>(args)`
//! (`_` is the output, inferred from the `return`). A literal is then inferred as the input
//! type, and an argument of another type is a type error on that argument.
//!
//! Which calls are rewritten:
//! - Those whose receiver is the context parameter, by name (`ctx`, `(ctx)`, `&ctx`),
//!   anywhere in the body, closures and async blocks included: they capture that `ctx`.
//! - Also after a `let` that shadows `ctx`. The walk does not track bindings: in practice
//!   a shadowing `ctx` is the context again (`let ctx = &ctx;`, `ctx.clone()`). Were it
//!   something else with a `continue_as_new` method, the turbofish is a compile error
//!   there, never wrong data.
//! - Not inside items nested in the body (`fn`, `impl`, `mod`, ...): an item cannot
//!   capture a local, so a `ctx` in one is another binding.
//! - Not a call with a turbofish: naming the type is the way to send another one.
//! - Not `continue_as_new_latest`: its next generation runs the newest version of the
//!   orchestrator, whose input may be another type.
//! - In a macro's arguments when they parse as expressions (`tokio::select!` branches,
//!   `vec![...]`, `assert!(...)`), as the body check reads them; other arguments
//!   are opaque tokens and left as written.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::visit_mut::VisitMut;
use syn::{AngleBracketedGenericArguments, Block, Expr, ExprMethodCall, Type};

use crate::context::{self, Parameters};
use crate::macro_call::MacroArgs;

/// `body` with every `context.continue_as_new(args)` given the turbofish
/// `::<input, _>`. The input type keeps the spans of the signature, the rest of the
/// turbofish those of the method name, so errors point at the user's code.
pub(crate) fn type_the_input(body: &Block, params: &Parameters, input: &Type) -> Block {
    let mut rewrite = Rewrite {
        context: &params.context,
        input,
        rewrites: 0,
    };
    let mut body = body.clone();
    rewrite.visit_block_mut(&mut body);
    body
}

struct Rewrite<'a> {
    /// The names of the context parameter.
    context: &'a [String],
    input: &'a Type,
    /// Calls rewritten so far: whether a macro's arguments must be written back.
    rewrites: usize,
}

impl Rewrite<'_> {
    /// Whether `expr` is the context parameter: `ctx`, `(ctx)`, `&ctx`.
    fn is_context(&self, expr: &Expr) -> bool {
        context::is_binding(expr, &|name| self.context.iter().any(|c| c == name))
    }

    fn turbofish(&self, span: Span) -> AngleBracketedGenericArguments {
        let input = self.input;
        syn::parse_quote_spanned!(span=> ::<#input, _>)
    }
}

impl VisitMut for Rewrite<'_> {
    fn visit_expr_method_call_mut(&mut self, node: &mut ExprMethodCall) {
        syn::visit_mut::visit_expr_method_call_mut(self, node);
        if node.turbofish.is_none()
            && node.method.unraw() == "continue_as_new"
            && self.is_context(&node.receiver)
        {
            node.turbofish = Some(self.turbofish(node.method.span()));
            self.rewrites += 1;
        }
    }

    // Items cannot capture the context: a `ctx` inside one is another binding.
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        let before = self.rewrites;
        let name = mac
            .path
            .segments
            .last()
            .map(|segment| segment.ident.unraw().to_string())
            .unwrap_or_default();
        let mut args = MacroArgs::parse(&name, mac.tokens.clone());
        args.visit_mut(self);
        // Written back only when something changed, so other macros keep their tokens
        // exactly as written.
        if self.rewrites != before {
            mac.tokens = args.to_token_stream();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn rewritten(body: Block) -> String {
        let params = Parameters {
            context: vec!["ctx".into()],
            all: vec!["ctx".into(), "n".into()],
        };
        let input: Type = parse_quote!(u32);
        let body = type_the_input(&body, &params, &input);
        quote!(#body).to_string()
    }

    const TYPED: &str = "ctx . continue_as_new :: < u32 , _ > (1)";

    #[test]
    fn types_the_calls_on_the_context() {
        let out = rewritten(parse_quote!({
            if n == 0 {
                return ctx.continue_as_new(1).await;
            }
            let f = || ctx.continue_as_new(1);
            let g = async move { (&ctx).continue_as_new(2).await };
            let h = async { r#ctx.continue_as_new(3) };
        }));
        assert_eq!(out.matches(TYPED).count(), 2, "{out}");
        assert!(
            out.contains("(& ctx) . continue_as_new :: < u32 , _ > (2)"),
            "{out}"
        );
        assert!(
            out.contains("r#ctx . continue_as_new :: < u32 , _ > (3)"),
            "{out}"
        );
    }

    #[test]
    fn types_the_calls_in_macro_arguments() {
        let out = rewritten(parse_quote!({
            tokio::select! {
                biased;
                _ = ctx.wait_event::<()>("stop") => Ok(n),
                _ = ctx.sleep(d) => ctx.continue_as_new(1).await,
            }
            let v = vec![ctx.continue_as_new(1)];
            opaque!(ctx.continue_as_new(1) => ;);
        }));
        assert_eq!(out.matches(TYPED).count(), 2, "{out}");
        assert!(out.contains("opaque ! (ctx . continue_as_new (1)"), "{out}");
        assert!(out.contains("ctx . wait_event :: < () >"), "{out}");
    }

    #[test]
    fn leaves_other_calls_alone() {
        let body: Block = parse_quote!({
            fn nested(ctx: Other) {
                ctx.continue_as_new(1);
            }
            impl Other {
                fn method(&self, ctx: Other) {
                    ctx.continue_as_new(1);
                }
            }
            ctx.continue_as_new::<u64, _>(1);
            ctx.continue_as_new_latest(1);
            self.ctx.continue_as_new(1);
            other.continue_as_new(1);
            ctx.clone().continue_as_new(1);
            format!("{}", 1);
        });
        let out = rewritten(body.clone());
        assert_eq!(out, quote!(#body).to_string());
    }

    #[test]
    fn rewrites_a_shadowing_ctx_too() {
        let out = rewritten(parse_quote!({
            let ctx = &ctx;
            ctx.continue_as_new(1)
        }));
        assert!(out.contains(TYPED), "{out}");
    }
}
