//! What a `loop` body does, for DETERMINISM.md rule 16: whether it awaits, whether it
//! can end (`break`, `return`), and whether it continues as new.

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// What a loop body does, for rule 16.
#[derive(Default)]
pub(crate) struct LoopScan {
    /// The loop's own label, which a `break 'label` in a nested loop leaves.
    label: Option<String>,
    /// Nested loops: an unlabeled `break` inside one does not leave ours.
    loops: usize,
    /// Closures and async blocks: `return` inside one does not leave ours.
    closures: usize,
    /// Something in the body is awaited.
    pub(crate) awaits: bool,
    /// A `break` or `return` leaves the loop.
    pub(crate) exits: bool,
    /// `continue_as_new` is called.
    pub(crate) continues_as_new: bool,
}

impl LoopScan {
    pub(crate) fn of(node: &syn::ExprLoop) -> Self {
        let mut scan = LoopScan {
            label: node
                .label
                .as_ref()
                .map(|label| label.name.ident.to_string()),
            ..LoopScan::default()
        };
        scan.visit_block(&node.body);
        scan
    }
}

impl<'ast> Visit<'ast> for LoopScan {
    fn visit_expr_await(&mut self, node: &'ast syn::ExprAwait) {
        self.awaits = true;
        syn::visit::visit_expr_await(self, node);
    }

    fn visit_expr_method_call(&mut self, node: &'ast syn::ExprMethodCall) {
        if node.method.to_string().starts_with("continue_as_new") {
            self.continues_as_new = true;
        }
        syn::visit::visit_expr_method_call(self, node);
    }

    fn visit_path(&mut self, node: &'ast syn::Path) {
        if node
            .segments
            .last()
            .is_some_and(|s| s.ident.to_string().starts_with("continue_as_new"))
        {
            self.continues_as_new = true;
        }
        syn::visit::visit_path(self, node);
    }

    fn visit_expr_break(&mut self, node: &'ast syn::ExprBreak) {
        let ours = match &node.label {
            Some(label) => self.label.as_deref() == Some(&*label.ident.to_string()),
            None => self.loops == 0,
        };
        if ours && self.closures == 0 {
            self.exits = true;
        }
        syn::visit::visit_expr_break(self, node);
    }

    fn visit_expr_return(&mut self, node: &'ast syn::ExprReturn) {
        if self.closures == 0 {
            self.exits = true;
        }
        syn::visit::visit_expr_return(self, node);
    }

    fn visit_expr_loop(&mut self, node: &'ast syn::ExprLoop) {
        self.loops += 1;
        syn::visit::visit_expr_loop(self, node);
        self.loops -= 1;
    }

    fn visit_expr_while(&mut self, node: &'ast syn::ExprWhile) {
        self.loops += 1;
        syn::visit::visit_expr_while(self, node);
        self.loops -= 1;
    }

    fn visit_expr_for_loop(&mut self, node: &'ast syn::ExprForLoop) {
        self.loops += 1;
        syn::visit::visit_expr_for_loop(self, node);
        self.loops -= 1;
    }

    fn visit_expr_closure(&mut self, node: &'ast syn::ExprClosure) {
        self.closures += 1;
        syn::visit::visit_expr_closure(self, node);
        self.closures -= 1;
    }

    fn visit_expr_async(&mut self, node: &'ast syn::ExprAsync) {
        self.closures += 1;
        syn::visit::visit_expr_async(self, node);
        self.closures -= 1;
    }

    // Items nested in the loop are not part of it.
    fn visit_item(&mut self, _: &'ast syn::Item) {}

    // A macro's arguments are tokens: any `.await`, `break`, `return` or
    // `continue_as_new` in them counts (`tokio::select!` branches often `break`).
    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        fn scan_tokens(scan: &mut LoopScan, tokens: TokenStream) {
            for tree in tokens {
                match tree {
                    TokenTree::Ident(ident) => match ident.to_string().as_str() {
                        "await" => scan.awaits = true,
                        "break" | "return" => scan.exits = true,
                        name if name.starts_with("continue_as_new") => {
                            scan.continues_as_new = true;
                        }
                        _ => {}
                    },
                    TokenTree::Group(group) => scan_tokens(scan, group.stream()),
                    _ => {}
                }
            }
        }
        scan_tokens(self, node.tokens.clone());
    }
}
