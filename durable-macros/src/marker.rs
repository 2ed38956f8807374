//! The marker protocol between `#[deterministic]` and the checks of its callers
//! (DETERMINISM.md rule 17): what the attribute emits next to a helper, and what an
//! orchestrator's or a helper's body emits at a call that passes the context.
//!
//! A proc macro cannot see other functions, so the caller's expansion names something
//! only a `#[deterministic]` helper has, at the path of the call, and rustc checks it:
//!
//! - a free function `plan` gets a companion type `plan` ([`companion`]; the type
//!   namespace, so it travels with every `use` of the function) implementing
//!   `durable_core::__private::Deterministic`; the caller imports the path and asks
//!   rustc for that trait ([`free_fn_check`]);
//! - a method or associated function `step` gets a hidden twin
//!   `step__needs_deterministic_attribute` that forwards to it ([`twin`]), and the
//!   caller calls the twin instead ([`twin_ident`]). An unmarked method has no twin, and
//!   rustc says "no method named `step__needs_deterministic_attribute` found", at the
//!   call.
//!
//! The other half is in `durable_core::__private`: the trait `Deterministic`, the
//! function `deterministic::<T>()` that asks for it, and the fallback type
//! `unmarked::NotMarkedDeterministic`. And each macro recognises the others'
//! attributes on items nested in a body it checks ([`checked_on_its_own`]).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Attribute, FnArg, Ident, PathArguments, Signature, Stmt, Visibility};

use crate::symbol::{self, ACTIVITY, DETERMINISTIC, ORCHESTRATOR};

/// The suffix of the twin: the only text rustc shows when a method is not marked.
const TWIN_SUFFIX: &str = "__needs_deterministic_attribute";

/// The twin of the method `name`, spanned like it so rustc's error points at the call.
pub(crate) fn twin_ident(name: &Ident) -> Ident {
    format_ident!("{}{TWIN_SUFFIX}", name.unraw(), span = name.span())
}

/// The companion type of a free function: same name, type namespace, implements the
/// trait the caller's check asks for.
pub(crate) fn companion(vis: &Visibility, name: &Ident) -> TokenStream {
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
pub(crate) fn twin(
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

/// The statement that makes rustc check a free function is `#[deterministic]`.
///
/// `#[deterministic] fn plan` also declares a type `plan` implementing
/// `durable_core::__private::Deterministic`. The check imports the callee's path under a
/// fixed name, next to a glob import of a fallback type of that name: an explicit import
/// shadows a glob one, so the name is the companion type if `plan` has one and the
/// fallback (which does not implement the trait) if not. The trait's
/// `#[diagnostic::on_unimplemented]` then says what to do, spanned on the call.
pub(crate) fn free_fn_check(path: &syn::Path) -> Stmt {
    let last = path.segments.last().expect("a path has a segment");
    let span = last.ident.span();
    let mut path = path.clone();
    for segment in &mut path.segments {
        segment.arguments = PathArguments::None;
    }
    let marker = syn::Ident::new("NotMarkedDeterministic", span);
    syn::parse_quote_spanned! {span=>
        {
            #[allow(unused_imports)]
            use ::durable_core::__private::unmarked::*;
            #[allow(unused_imports)]
            use #path as #marker;
            ::durable_core::__private::deterministic::<#marker>();
        }
    }
}

/// Whether `attr` is `#[deterministic]`, by any path (`#[durable_core::deterministic]`).
pub(crate) fn is_deterministic(attr: &Attribute) -> bool {
    symbol::ends_in(attr.path(), DETERMINISTIC)
}

/// Whether an item nested in a checked body carries one of the attributes that check it
/// on their own, so the walker of the body around it leaves it alone.
pub(crate) fn checked_on_its_own(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        [DETERMINISTIC, ACTIVITY, ORCHESTRATOR]
            .into_iter()
            .any(|name| symbol::ends_in(attr.path(), name))
    })
}
