//! `#[deterministic]`: a helper that takes the orchestration context, its body checked
//! like an orchestrator's (DETERMINISM.md rule 17), and the marker its callers' checks
//! look for next to it (the protocol is in `marker.rs`).

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl, Signature};

use crate::body_check;
use crate::context::{Owner, Parameters};
use crate::errors::Errors;
use crate::marker::{self, companion, twin};

/// Expands `#[deterministic]` on a function, a method, or an `impl` block.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let args_error = (!args.is_empty()).then(|| {
        syn::Error::new_spanned(
            &args,
            "#[deterministic] takes no arguments: write `#[deterministic]`",
        )
        .to_compile_error()
    });
    let expanded = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => expand_fn(function),
        Ok(Item::Impl(block)) => expand_impl(block),
        // The item is kept next to the error, so its uses report nothing unrelated.
        Ok(other) => {
            let error = syn::Error::new_spanned(
                &other,
                "#[deterministic] applies to a function that takes the `OrchestrationContext`, or to an `impl` block of them",
            )
            .to_compile_error();
            quote!(#error #other)
        }
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#error #item)
        }
    };
    quote!(#args_error #expanded)
}

/// The subject of messages: "deterministic helper `plan`".
fn subject(owner: Option<&str>, name: &Ident) -> String {
    match owner {
        Some(owner) => format!("deterministic helper `{owner}::{}`", name.unraw()),
        None => format!("deterministic helper `{}`", name.unraw()),
    }
}

/// Whether a signature names `Self` anywhere (`self: &Self`, `-> Self`, `Self::Item`):
/// then the function sits in an `impl` block. `Self` is a keyword, so its tokens say it.
fn mentions_self(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "Self",
        TokenTree::Group(group) => mentions_self(group.stream()),
        _ => false,
    })
}

/// Checks a function's body; returns it rewritten, or the errors.
fn check_body(owner: Option<&str>, sig: &Signature, block: &syn::Block) -> syn::Result<syn::Block> {
    let params = Parameters::of(
        Owner::Helper,
        sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(param) => Some(param),
            FnArg::Receiver(_) => None,
        }),
    );
    body_check::check(&subject(owner, &sig.ident), &params, block)
}

fn expand_fn(mut function: ItemFn) -> TokenStream {
    let original = quote!(#function);
    // A receiver or a `Self` means the function sits in an `impl` block, where only a
    // twin can go; anything else is a free function, which gets a companion type.
    let sig = &function.sig;
    let marker = if sig.receiver().is_some() || mentions_self(sig.to_token_stream()) {
        let cfgs = cfg_attrs(&function.attrs);
        twin(&function.vis, sig, &cfgs, &quote!(Self))
    } else {
        companion(&function.vis, &sig.ident)
    };
    match check_body(None, &function.sig, &function.block) {
        Ok(block) => {
            *function.block = block;
            quote!(#function #marker)
        }
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#error #original #marker)
        }
    }
}

fn expand_impl(mut block: ItemImpl) -> TokenStream {
    let owner = match &*block.self_ty {
        syn::Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let mut errors = Errors::new();
    let mut twins = Vec::new();
    let forward = match &block.trait_ {
        Some((_, path, _)) => quote!(<Self as #path>),
        None => quote!(Self),
    };
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        // The block's attribute covers its methods; one of their own would add a second twin.
        method.attrs.retain(|attr| !marker::is_deterministic(attr));
        let vis = match (&block.trait_, &method.vis) {
            (Some(_), _) => syn::parse_quote!(pub),
            (None, vis) => vis.clone(),
        };
        twins.push(twin(&vis, &method.sig, &cfg_attrs(&method.attrs), &forward));
        check_method(owner.as_deref(), method, &mut errors);
    }
    let errors = errors.check().err().map(|error| error.to_compile_error());
    let twins = match &block.trait_ {
        None => {
            for twin in twins {
                block.items.push(ImplItem::Verbatim(twin));
            }
            TokenStream::new()
        }
        Some(_) => {
            let (generics, self_ty, where_clause) = (
                &block.generics,
                &block.self_ty,
                &block.generics.where_clause,
            );
            quote!(impl #generics #self_ty #where_clause { #(#twins)* })
        }
    };
    quote!(#errors #block #twins)
}

fn check_method(owner: Option<&str>, method: &mut ImplItemFn, errors: &mut Errors) {
    if let Some(block) = errors.take(check_body(owner, &method.sig, &method.block)) {
        method.block = block;
    }
}

fn cfg_attrs(attrs: &[syn::Attribute]) -> Vec<&syn::Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_text(item: TokenStream) -> String {
        expand(TokenStream::new(), item).to_string()
    }

    #[test]
    fn gives_a_free_function_a_companion_type() {
        let out = expand_text(quote! {
            pub fn plan(ctx: &OrchestrationContext, n: u32) -> u32 { n }
        });
        assert!(out.contains("pub fn plan"), "{out}");
        assert!(out.contains("pub enum plan { }"), "{out}");
        assert!(
            out.contains("impl :: durable_core :: __private :: Deterministic for plan"),
            "{out}"
        );
    }

    #[test]
    fn gives_a_method_a_twin() {
        let out = expand_text(quote! {
            async fn step(&mut self, ctx: &OrchestrationContext, (a, b): (u32, u32)) -> u32 { a }
        });
        assert!(
            out.contains("async fn step__needs_deterministic_attribute (& mut self , __durable_arg1 : & OrchestrationContext , __durable_arg2 : (u32 , u32)) -> u32"),
            "{out}"
        );
        assert!(
            out.contains("Self :: step (self , __durable_arg1 , __durable_arg2) . await"),
            "{out}"
        );
    }

    #[test]
    fn puts_the_twins_of_a_trait_impl_in_an_inherent_impl() {
        let out = expand_text(quote! {
            impl<T: Clone> Step for Worker<T> where T: Send {
                fn run(&self, ctx: &OrchestrationContext) {}
            }
        });
        assert!(
            out.contains("impl < T : Clone > Worker < T > where T : Send { # [doc (hidden)]"),
            "{out}"
        );
        assert!(
            out.contains("< Self as Step > :: run (self , __durable_arg1)"),
            "{out}"
        );
    }

    #[test]
    fn checks_bodies_with_the_helper_named() {
        let out = expand_text(quote! {
            fn plan(ctx: &OrchestrationContext) { let t = std::time::Instant::now(); }
        });
        assert!(
            out.contains("is not replay-safe in deterministic helper `plan`"),
            "{out}"
        );
        let out = expand_text(quote! {
            impl Worker { fn step(&self) { println!("x"); } }
        });
        assert!(
            out.contains("is not replay-safe in deterministic helper `Worker::step`"),
            "{out}"
        );
    }
}
