//! The model of an annotated function: the parts of its signature the rules and the
//! generated code need, each a reference to the user's own tokens so errors and
//! generated items keep the user's spans.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{
    Attribute, Block, FnArg, GenericArgument, Ident, Item, ItemFn, PatType, PathArguments,
    Receiver, ReturnType, Signature, Type, Visibility,
};

use crate::symbol::{ACTIVITY_CONTEXT, ORCHESTRATION_CONTEXT, Symbol};

/// Which macro is expanding: the two share one pipeline and differ in names only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Orchestrator,
    Activity,
}

impl Kind {
    /// The attribute as a user writes it, for messages.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Kind::Orchestrator => "#[orchestrator]",
            Kind::Activity => "#[activity]",
        }
    }

    /// The article and attribute, for messages: "an #[orchestrator]".
    pub(crate) fn with_article(self) -> String {
        format!("an {}", self.attribute())
    }

    /// The lower-case noun, for messages and generated docs.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Orchestrator => "orchestrator",
            Kind::Activity => "activity",
        }
    }

    /// The context type the first parameter takes.
    pub(crate) fn context(self) -> Symbol {
        match self {
            Kind::Orchestrator => ORCHESTRATION_CONTEXT,
            Kind::Activity => ACTIVITY_CONTEXT,
        }
    }

    /// The accepted signature, as shown in every signature error.
    pub(crate) fn form(self) -> String {
        format!(
            "async fn name(ctx: {}, input: T) -> Result<U, E>",
            self.context()
        )
    }

    /// An error on `tokens` saying what the signature must be and how to fix it.
    pub(crate) fn signature_error(self, tokens: impl ToTokens, fix: &str) -> syn::Error {
        syn::Error::new_spanned(tokens, self.signature_message(fix))
    }

    /// Like [`Kind::signature_error`], for a span that has no tokens of its own.
    pub(crate) fn signature_error_at(self, span: Span, fix: &str) -> syn::Error {
        syn::Error::new(span, self.signature_message(fix))
    }

    fn signature_message(self, fix: &str) -> String {
        format!("{} must be `{}`; {fix}", self.with_article(), self.form())
    }
}

/// The annotated function as the user wrote it, whether or not it follows the rules.
#[derive(Debug)]
pub(crate) struct Function<'a> {
    pub(crate) attrs: &'a [Attribute],
    pub(crate) vis: &'a Visibility,
    pub(crate) sig: &'a Signature,
    pub(crate) name: &'a Ident,
    pub(crate) receiver: Option<&'a Receiver>,
    /// The typed parameters, without the receiver.
    pub(crate) params: Vec<&'a PatType>,
    pub(crate) output: Output<'a>,
    pub(crate) body: &'a Block,
}

/// The return type, split when it is spelled `Result<O, E>`.
#[derive(Debug)]
pub(crate) enum Output<'a> {
    /// No `-> ...` at all.
    Missing,
    /// `Result<O, E>` (any path ending in `Result` with two type arguments).
    Result {
        ty: &'a Type,
        ok: &'a Type,
        err: &'a Type,
    },
    /// Anything else, including a one-argument alias such as `anyhow::Result<T>`.
    Other(&'a Type),
}

/// A function that follows every rule: exactly what the generated code needs.
#[derive(Debug)]
pub(crate) struct Handle<'a> {
    pub(crate) attrs: &'a [Attribute],
    pub(crate) vis: &'a Visibility,
    pub(crate) name: &'a Ident,
    pub(crate) ctx: &'a PatType,
    pub(crate) input: &'a PatType,
    /// The whole return type as written, `Result<O, E>`.
    pub(crate) result: &'a Type,
    pub(crate) ok: &'a Type,
    pub(crate) err: &'a Type,
}

/// Parses the annotated item, which must be a function.
pub(crate) fn parse_item(kind: Kind, item: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<Item>(item)? {
        Item::Fn(function) => Ok(function),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "{} applies to a function: `{}`",
                kind.attribute(),
                kind.form()
            ),
        )),
    }
}

impl<'a> Function<'a> {
    pub(crate) fn new(item: &'a ItemFn) -> Self {
        let sig = &item.sig;
        let mut receiver = None;
        let mut params = Vec::new();
        for arg in &sig.inputs {
            match arg {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(param) => params.push(param),
            }
        }
        let output = match &sig.output {
            ReturnType::Default => Output::Missing,
            ReturnType::Type(_, ty) => split_result(ty),
        };
        Function {
            attrs: &item.attrs,
            vis: &item.vis,
            sig,
            name: &sig.ident,
            receiver,
            params,
            output,
            body: &item.block,
        }
    }
}

/// Splits `Result<O, E>` into its two type arguments.
///
/// This is the one place the macro reads a type by its spelling: it needs the two
/// arguments to name `Output` and `Error`. Whether the path really is
/// `core::result::Result` is left to rustc, which compares the inherent `run` with the
/// trait's `Result<Self::Output, Self::Error>`.
pub(crate) fn split_result(ty: &Type) -> Output<'_> {
    let inner = peel(ty);
    let Type::Path(path) = inner else {
        return Output::Other(ty);
    };
    if path.qself.is_some() {
        return Output::Other(ty);
    }
    let Some(last) = path.path.segments.last() else {
        return Output::Other(ty);
    };
    if last.ident != "Result" {
        return Output::Other(ty);
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return Output::Other(ty);
    };
    let mut types = generics.args.iter().map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(ok)), Some(Some(err)), None) => Output::Result { ty, ok, err },
        _ => Output::Other(ty),
    }
}

/// Looks through the invisible groups `macro_rules!` wraps `$t:ty` in, and parentheses.
pub(crate) fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => peel(&group.elem),
        Type::Paren(paren) => peel(&paren.elem),
        other => other,
    }
}

/// The last path segment of a type, if it is a path: for messages only.
pub(crate) fn last_segment(ty: &Type) -> Option<&Ident> {
    match peel(ty) {
        Type::Path(path) => path.path.segments.last().map(|s| &s.ident),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn tokens(ty: &Type) -> String {
        quote!(#ty).to_string()
    }

    #[test]
    fn splits_result_with_two_arguments() {
        for ty in [
            parse_quote!(Result<u32, String>),
            parse_quote!(std::result::Result<u32, String>),
            parse_quote!(::core::result::Result<u32, String>),
        ] {
            let Output::Result { ok, err, .. } = split_result(&ty) else {
                panic!("{} was not split", tokens(&ty));
            };
            assert_eq!(tokens(ok), "u32");
            assert_eq!(tokens(err), "String");
        }
    }

    #[test]
    fn leaves_other_types_whole() {
        for ty in [
            parse_quote!(u32),
            parse_quote!(anyhow::Result<u32>),
            parse_quote!(Result<u32, String, Extra>),
            parse_quote!(Option<u32>),
            parse_quote!(<T as Trait>::Result<u32, String>),
        ] {
            assert!(
                matches!(split_result(&ty), Output::Other(_)),
                "{} was split",
                tokens(&ty)
            );
        }
    }

    #[test]
    fn separates_receiver_and_parameters() {
        let item: ItemFn = parse_quote! {
            /// Docs.
            pub async fn f(&self, ctx: Ctx, (a, b): (u32, u32)) -> Result<(), String> {}
        };
        let function = Function::new(&item);
        assert!(function.receiver.is_some());
        assert_eq!(function.params.len(), 2);
        assert_eq!(function.name, "f");
        assert_eq!(function.attrs.len(), 1);
        assert!(matches!(function.output, Output::Result { .. }));
    }

    #[test]
    fn rejects_items_that_are_not_functions() {
        let err = parse_item(
            Kind::Activity,
            quote!(
                struct S;
            ),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("#[activity] applies to a function")
        );
    }
}
