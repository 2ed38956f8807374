//! The rules of a critical section the macro can see: inside `#[orchestrator]` (and
//! `#[deterministic]` helpers), while the guard of `let section = ctx.lock(..).await..`
//! is in scope in a block, a further `ctx.lock(..)` or `ctx.sub_orchestration(..)` in
//! that block (nested blocks, closures and async blocks included) is a compile error,
//! spanned on the call. At run time both are refused with a `LockRuleViolation`
//! (Durable Functions' rules: no nested locks, no sub-orchestration in a section); the
//! macro reports what it can see before it runs.
//!
//! What counts:
//! - A guard: a `let` binding a name (`section`, `mut section`, `_section`, with or
//!   without a type) whose value is `ctx.lock(..).await`, then any of `?`, `.unwrap()`,
//!   `.expect(..)`, and other method calls on the result. `let _ = ..` drops the section
//!   at once: no guard.
//! - Its scope: the statements after it in its block, until `section.release();` or
//!   `drop(section);` as a statement of that block. A shadowing `let section = ..` does
//!   not end it (the first value lives to the end of the block).
//! - The calls: `lock`, `sub_orchestration`, `sub_orchestration_with_id` on the context
//!   parameter (`ctx`, `(ctx)`, `&ctx`), in expressions and in the arguments of macros
//!   that parse as expressions. Not in items nested in the body (another `ctx`).
//!
//! What it cannot see (a section passed to a helper, a guard held in a struct or moved
//! out of its block) is left to the run-time check.

use syn::ext::IdentExt;
use syn::visit_mut::VisitMut;
use syn::{Block, Expr, ExprMethodCall, Pat, Stmt};

use crate::context::{self, Parameters};
use crate::errors::Errors;
use crate::macro_call::MacroArgs;

/// Reports into `errors` every lock or sub-orchestration started where a section's guard
/// is in scope in `body` of `subject` ("orchestrator `transfer`").
pub(crate) fn check(subject: &str, params: &Parameters, body: &Block, errors: &mut Errors) {
    if params.context.is_empty() {
        return;
    }
    let mut walker = Walker {
        subject,
        context: &params.context,
        held: None,
        errors,
    };
    walker.visit_block_mut(&mut body.clone());
}

struct Walker<'a> {
    subject: &'a str,
    /// The names of the context parameter.
    context: &'a [String],
    /// The guard in scope where the walk is, innermost: its name.
    held: Option<String>,
    errors: &'a mut Errors,
}

impl Walker<'_> {
    fn is_context(&self, expr: &Expr) -> bool {
        context::is_binding(expr, &|name| self.context.iter().any(|c| c == name))
    }

    /// The name a statement binds to a section's guard, if it is `let name = ctx.lock(..)
    /// .await..`.
    fn guard(&self, stmt: &Stmt) -> Option<String> {
        let Stmt::Local(local) = stmt else {
            return None;
        };
        let init = local.init.as_ref()?;
        let mut pat = &local.pat;
        if let Pat::Type(typed) = pat {
            pat = &typed.pat;
        }
        let Pat::Ident(binding) = pat else {
            return None;
        };
        self.is_lock_await(&init.expr)
            .then(|| binding.ident.unraw().to_string())
    }

    /// Whether `expr` is `ctx.lock(..).await` followed by `?` and method calls.
    fn is_lock_await(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Try(inner) => self.is_lock_await(&inner.expr),
            Expr::Paren(inner) => self.is_lock_await(&inner.expr),
            Expr::MethodCall(call) => self.is_lock_await(&call.receiver),
            Expr::Await(awaited) => match &*awaited.base {
                Expr::MethodCall(call) => {
                    call.method.unraw() == "lock" && self.is_context(&call.receiver)
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether `stmt` ends the section of guard `name`: `name.release();` or
    /// `drop(name);`.
    fn releases(stmt: &Stmt, name: &str) -> bool {
        let Stmt::Expr(expr, Some(_)) = stmt else {
            return false;
        };
        let is_name = |expr: &Expr| match expr {
            Expr::Path(path) => path.path.get_ident().is_some_and(|id| id.unraw() == name),
            _ => false,
        };
        match expr {
            Expr::MethodCall(call) => {
                call.method.unraw() == "release" && call.args.is_empty() && is_name(&call.receiver)
            }
            Expr::Call(call) => {
                let drop = match &*call.func {
                    Expr::Path(path) => path
                        .path
                        .segments
                        .last()
                        .is_some_and(|last| last.ident.unraw() == "drop"),
                    _ => false,
                };
                drop && call.args.len() == 1 && call.args.first().is_some_and(is_name)
            }
            _ => false,
        }
    }
}

impl VisitMut for Walker<'_> {
    fn visit_block_mut(&mut self, block: &mut Block) {
        let outer = self.held.clone();
        // The guards of this block, innermost last.
        let mut guards: Vec<String> = Vec::new();
        for stmt in &mut block.stmts {
            self.held = guards.last().cloned().or_else(|| outer.clone());
            if let Some(position) = guards.iter().rposition(|g| Self::releases(stmt, g)) {
                guards.remove(position);
                continue;
            }
            let guard = self.guard(stmt);
            self.visit_stmt_mut(stmt);
            guards.extend(guard);
        }
        self.held = outer;
    }

    fn visit_expr_method_call_mut(&mut self, node: &mut ExprMethodCall) {
        syn::visit_mut::visit_expr_method_call_mut(self, node);
        let Some(held) = &self.held else {
            return;
        };
        if !self.is_context(&node.receiver) {
            return;
        }
        let method = node.method.unraw().to_string();
        let message = match method.as_str() {
            "lock" => format!(
                "`{}.lock(..)` inside the critical section of `{held}` in {}: a nested lock \
                 is refused (`LockRuleViolation::NestedLock`); lock every entity in one \
                 `lock`, or end the section first (`{held}.release()`)",
                context_name(&node.receiver),
                self.subject
            ),
            "sub_orchestration" | "sub_orchestration_with_id" => format!(
                "`{}.{method}(..)` inside the critical section of `{held}` in {}: a \
                 sub-orchestration is refused inside a section \
                 (`LockRuleViolation::SubOrchestration`); start it after `{held}.release()`",
                context_name(&node.receiver),
                self.subject
            ),
            _ => return,
        };
        let span = node.method.span();
        self.errors.push(syn::Error::new(span, message));
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map(|segment| segment.ident.unraw().to_string())
            .unwrap_or_default();
        MacroArgs::parse(&name, mac.tokens.clone()).visit_mut(self);
    }

    // Items nested in the body are checked on their own, if at all: a `ctx` there is
    // another binding.
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

/// How the receiver is written, for the message: `ctx`.
fn context_name(receiver: &Expr) -> String {
    match receiver {
        Expr::Paren(inner) => context_name(&inner.expr),
        Expr::Group(inner) => context_name(&inner.expr),
        Expr::Reference(inner) => context_name(&inner.expr),
        Expr::Path(path) => path
            .path
            .get_ident()
            .map_or_else(|| "ctx".to_string(), |id| id.unraw().to_string()),
        _ => "ctx".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn messages(body: Block) -> Vec<String> {
        let params = Parameters {
            context: vec!["ctx".into()],
            all: vec!["ctx".into()],
        };
        let mut errors = Errors::new();
        check("orchestrator `t`", &params, &body, &mut errors);
        match errors.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_lock_or_a_child_inside_a_section_is_reported() {
        let found = messages(parse_quote!({
            let section = ctx.lock(ids).await?;
            ctx.call_entity(Account::deposit, "a", 1).await?;
            if x {
                ctx.lock(more).await?;
            }
            let go = async { ctx.sub_orchestration(child, 1).await };
            section.release();
            ctx.lock(again).await?;
            ctx.sub_orchestration(child, 2).await?;
        }));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("`ctx.lock(..)` inside the critical section of `section`"));
        assert!(found[1].starts_with("`ctx.sub_orchestration(..)` inside the critical section"));
    }

    #[test]
    fn a_section_ends_with_its_block_or_its_drop() {
        let found = messages(parse_quote!({
            {
                let _section = ctx.lock(ids).await.unwrap();
                ctx.call_entity(Account::deposit, "a", 1).await?;
            }
            ctx.lock(ids).await?;
            let s: CriticalSection = ctx.lock(ids).await.expect("locked");
            drop(s);
            ctx.sub_orchestration_with_id(child, "c", 1).await?;
            let _ = ctx.lock(ids).await?;
            ctx.lock(ids).await?;
            fn helper(ctx: Other) {
                ctx.lock(1);
            }
        }));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn nested_sections_and_macros_are_seen() {
        let found = messages(parse_quote!({
            let outer = ctx.lock(ids).await?;
            let inner = (ctx).lock(other).await?;
            inner.release();
            vec![ctx.sub_orchestration_with_id(child, "c", 1)];
            outer.release();
        }));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("critical section of `outer`"));
        assert!(found[1].contains("sub_orchestration_with_id"));
    }
}
