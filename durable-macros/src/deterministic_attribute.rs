//! `#[deterministic]`: a helper that takes the orchestration context, checked like an
//! orchestrator's body, with a marker that callers' checks refer to (DETERMINISM.md
//! rule 17).
//!
//! A proc macro cannot see other functions, so the caller's expansion names something
//! only a `#[deterministic]` helper has, at the path of the call:
//!
//! - a free function `plan` gets a companion type `plan` (the type namespace, so it
//!   travels with every `use` of the function) implementing
//!   `durable_core::__private::Deterministic`; the caller imports the path and asks
//!   rustc for that trait (see `body_check::marker_check`);
//! - a method or associated function `step` gets a hidden twin
//!   `step__needs_deterministic_attribute` that forwards to it, and the caller calls the
//!   twin instead. An unmarked method has no twin, and rustc says "no method named
//!   `step__needs_deterministic_attribute` found", at the call.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl, Signature, Visibility};

use crate::body_check;
use crate::errors::Errors;

/// The suffix of the twin: the only text rustc shows when a method is not marked.
const TWIN_SUFFIX: &str = "__needs_deterministic_attribute";

/// The twin of the method `name`, spanned like it so rustc's error points at the call.
pub(crate) fn twin_ident(name: &Ident) -> Ident {
    format_ident!("{}{TWIN_SUFFIX}", name.unraw(), span = name.span())
}

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

/// The names of the parameters that are the context (by type) and of all parameters.
fn parameters(sig: &Signature) -> (Vec<String>, Vec<String>) {
    let mut context = Vec::new();
    let mut all = Vec::new();
    for arg in &sig.inputs {
        let FnArg::Typed(param) = arg else { continue };
        let mut names = Vec::new();
        collect_bindings(&param.pat, &mut names);
        if mentions(&quote!(#param), "OrchestrationContext") {
            context.extend(names.iter().cloned());
        }
        all.extend(names);
    }
    (context, all)
}

fn collect_bindings(pat: &syn::Pat, names: &mut Vec<String>) {
    struct Bindings<'a>(&'a mut Vec<String>);
    impl<'ast> syn::visit::Visit<'ast> for Bindings<'_> {
        fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
            self.0.push(node.ident.unraw().to_string());
        }
    }
    syn::visit::Visit::visit_pat(&mut Bindings(names), pat);
}

/// Whether `tokens` contain the identifier `name` at any depth.
fn mentions(tokens: &TokenStream, name: &str) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => ident == name,
        proc_macro2::TokenTree::Group(group) => mentions(&group.stream(), name),
        _ => false,
    })
}

/// Checks a function's body; returns it rewritten, or the errors.
fn check_body(owner: Option<&str>, sig: &Signature, block: &syn::Block) -> syn::Result<syn::Block> {
    let (context, params) = parameters(sig);
    body_check::check(&subject(owner, &sig.ident), &context, &params, block)
}

fn expand_fn(mut function: ItemFn) -> TokenStream {
    let original = quote!(#function);
    // A receiver or a `Self` means the function sits in an `impl` block, where only a
    // twin can go; anything else is a free function, which gets a companion type.
    let sig = &function.sig;
    let marker = if sig.receiver().is_some() || mentions(&quote!(#sig), "Self") {
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
        method.attrs.retain(|attr| {
            attr.path()
                .segments
                .last()
                .is_none_or(|s| s.ident != "deterministic")
        });
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

/// The companion type of a free function: same name, type namespace, implements the
/// trait the caller's check asks for.
fn companion(vis: &Visibility, name: &Ident) -> TokenStream {
    let span = name.span();
    quote_spanned! {span=>
        /// Marks the function of the same name as `#[deterministic]`.
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Debug)]
        #vis enum #name {}

        #[diagnostic::do_not_recommend]
        impl ::durable_core::__private::Deterministic for #name {}
    }
}

/// The twin of a method: same signature, forwards to it through `forward` (`Self` or
/// `<Self as Trait>`).
fn twin(
    vis: &Visibility,
    sig: &Signature,
    cfgs: &[&syn::Attribute],
    forward: &TokenStream,
) -> TokenStream {
    let name = &sig.ident;
    let twin = twin_ident(name);
    let (constness, asyncness, unsafety) = (&sig.constness, &sig.asyncness, &sig.unsafety);
    let (generics, where_clause, output) = (&sig.generics, &sig.generics.where_clause, &sig.output);
    let mut params = Vec::new();
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(receiver) => {
                let receiver = match (&receiver.reference, &receiver.colon_token) {
                    (Some((and, lifetime)), _) => {
                        let mutability = &receiver.mutability;
                        quote!(#and #lifetime #mutability self)
                    }
                    (None, Some(_)) => {
                        let ty = &receiver.ty;
                        quote!(self: #ty)
                    }
                    (None, None) => quote!(self),
                };
                params.push(receiver);
                args.push(quote!(self));
            }
            FnArg::Typed(param) => {
                let arg = Ident::new(&format!("__durable_arg{i}"), Span::mixed_site());
                let ty = &param.ty;
                params.push(quote!(#arg: #ty));
                args.push(quote!(#arg));
            }
        }
    }
    let call = quote!(#forward::#name(#(#args),*));
    let call = match (asyncness, unsafety) {
        (Some(_), _) => quote!(#call.await),
        (None, Some(_)) => quote!(unsafe { #call }),
        (None, None) => call,
    };
    quote! {
        #(#cfgs)*
        #[doc(hidden)]
        #[allow(dead_code, non_snake_case, clippy::too_many_arguments)]
        #[inline]
        #vis #constness #asyncness #unsafety fn #twin #generics (#(#params),*) #output #where_clause {
            #call
        }
    }
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
