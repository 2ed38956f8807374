//! What a checked body declares, gathered before the walk (order does not matter to
//! items): the names the context goes by, the names patterns bind, and the `use` aliases.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::visit::Visit;
use syn::{Expr, Pat, UseTree};

use crate::context::{self, Parameters};
use crate::hazards;
use crate::site::{PathSite, Site};

/// What the body declares, gathered before the walk: order does not matter to items.
pub(crate) struct Scope {
    /// The names the context goes by: the parameter, and `let c = ctx.clone();` copies.
    pub(crate) context: BTreeSet<String>,
    /// Every name a pattern binds: a call of one is a closure or a fn pointer, not a helper.
    pub(crate) locals: BTreeSet<String>,
    /// `use` items in the body: the name they bind and the path it stands for.
    pub(crate) aliases: BTreeMap<String, Alias>,
}

pub(crate) struct Alias {
    pub(crate) target: Vec<String>,
    /// The import itself broke a rule (`use std::collections::HashMap as Map;`) and is
    /// reported there, not again at every use of the alias.
    pub(crate) reported: bool,
}

impl Scope {
    /// What `body` declares, given the function's parameters.
    pub(crate) fn gather(params: &Parameters, body: &syn::Block) -> Self {
        let mut scope = Scope {
            context: params.context.iter().cloned().collect(),
            locals: params.all.iter().cloned().collect(),
            aliases: BTreeMap::new(),
        };
        scope.visit_block(body);
        scope
    }

    /// Whether an argument is the context or a copy of it: `ctx`, `&ctx`, `&mut ctx`,
    /// `ctx.clone()`, by any of the names it goes by.
    pub(crate) fn is_context(&self, expr: &Expr) -> bool {
        context::is_binding_or_copy(expr, &|name| self.context.contains(name))
    }
}

impl<'ast> Visit<'ast> for Scope {
    fn visit_item_use(&mut self, node: &'ast syn::ItemUse) {
        for leaf in use_leaves(&node.tree) {
            let Some(name) = leaf.name else { continue };
            let site = import_site(&leaf.path);
            let reported = hazards::check(&Site::Path(&site)).is_some();
            self.aliases.insert(
                name,
                Alias {
                    target: leaf.path,
                    reported,
                },
            );
        }
    }

    fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
        self.locals.insert(node.ident.unraw().to_string());
        syn::visit::visit_pat_ident(self, node);
    }

    fn visit_local(&mut self, node: &'ast syn::Local) {
        let mut pat = &node.pat;
        if let Pat::Type(typed) = pat {
            pat = &typed.pat;
        }
        if let (Pat::Ident(binding), Some(init)) = (pat, &node.init)
            && self.is_context(&init.expr)
        {
            self.context.insert(binding.ident.unraw().to_string());
        }
        syn::visit::visit_local(self, node);
    }
}

/// One name a `use` item imports.
pub(crate) struct UseLeaf {
    /// The full path: `std::collections::HashMap`; for a glob, the module.
    pub(crate) path: Vec<String>,
    /// The name it is bound to: `Map` for `HashMap as Map`; none for a glob.
    pub(crate) name: Option<String>,
    pub(crate) tokens: TokenStream,
}

pub(crate) fn use_leaves(tree: &UseTree) -> Vec<UseLeaf> {
    fn walk(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
        let leaf = |prefix: &[String], ident: &syn::Ident, name: Option<&syn::Ident>| {
            let mut path = prefix.to_vec();
            if ident != "self" {
                path.push(ident.unraw().to_string());
            }
            let name = name.map(|n| n.unraw().to_string()).or(path.last().cloned());
            UseLeaf {
                path,
                name,
                tokens: tree.to_token_stream(),
            }
        };
        match tree {
            UseTree::Path(inner) => {
                prefix.push(inner.ident.unraw().to_string());
                walk(&inner.tree, prefix, out);
                prefix.pop();
            }
            UseTree::Name(name) => out.push(leaf(prefix, &name.ident, None)),
            UseTree::Rename(rename) => out.push(leaf(prefix, &rename.ident, Some(&rename.rename))),
            UseTree::Glob(_) => out.push(UseLeaf {
                path: prefix.clone(),
                name: None,
                tokens: tree.to_token_stream(),
            }),
            UseTree::Group(group) => {
                for tree in &group.items {
                    walk(tree, prefix, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

pub(crate) fn import_site(path: &[String]) -> PathSite {
    PathSite {
        written: path.to_vec(),
        resolved: path.to_vec(),
        alias: None,
        called: false,
    }
}
