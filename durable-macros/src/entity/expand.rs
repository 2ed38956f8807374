//! Generation: the impl block with each operation turned into its typed handle, and the
//! `Entity` impl.
//!
//! A method and an associated const cannot share a name in one type, and the handle must
//! be a value named like the operation (`Account::deposit`, as `#[activity]` makes a fn a
//! unit struct of its name). So each operation's function moves, as written, to a hidden
//! private method `__operation_<name>`, and `pub const <name>: Operation<..>` takes its
//! place, carrying the operation's name, its kind and a pointer to a small adapter that
//! calls the moved method. The generated `Entity::apply` matches the operation's name and
//! runs that handle; `Operation::run` runs it in unit tests.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, ImplItem, ImplItemFn, LitStr, Visibility};

use crate::ast::last_segment;
use crate::entity::args::EntityArgs;
use crate::entity::ast::{Access, EntityImpl, Operation, Returns, is_operation};

/// The impl block with its operations replaced by handles, and the `Entity` impl.
pub(crate) fn generate(
    entity: &EntityImpl<'_>,
    args: &EntityArgs,
    operations: &[Operation<'_>],
) -> TokenStream {
    let mut block = entity.item.clone();
    let mut checked = operations.iter();
    block.items = entity
        .item
        .items
        .iter()
        .flat_map(|item| match item {
            ImplItem::Fn(function) if is_operation(function) => {
                let operation = checked.next().expect("one checked operation per operation");
                operation_items(operation)
            }
            other => vec![other.clone()],
        })
        .collect();
    let trait_impl = entity_impl(entity, args, operations);
    quote! {
        #block
        #trait_impl
    }
}

/// The hidden name an operation's function moves to.
fn moved_name(operation: &Operation<'_>) -> syn::Ident {
    format_ident!("__operation_{}", operation.ident().unraw())
}

/// The handle const and the moved function of one operation.
fn operation_items(operation: &Operation<'_>) -> Vec<ImplItem> {
    let function = operation.function;
    let ident = operation.ident();
    let moved = moved_name(operation);
    let name = LitStr::new(&operation.name(), ident.span());
    let (docs, rest): (Vec<&Attribute>, Vec<&Attribute>) = function
        .attrs
        .iter()
        .partition(|attr| attr.path().is_ident("doc") || attr.path().is_ident("deprecated"));
    let vis = &function.vis;
    let input_ty = match operation.input {
        Some(input) => {
            let ty = &input.ty;
            quote!(#ty)
        }
        None => quote!(()),
    };
    let (ok, err) = match &operation.returns {
        Returns::Unit => (quote!(()), quote!(::durable_core::NoError)),
        Returns::Value(ty) => (quote!(#ty), quote!(::durable_core::NoError)),
        Returns::Result { ok, err } => (quote!(#ok), quote!(#err)),
    };
    let kind = match operation.access {
        Access::Read => quote!(Read),
        Access::Write => quote!(Write),
    };
    // Every token of the handle's initializer is spanned on the operation's name, so
    // rustc's errors about it (a type without serde's traits) point there.
    let span = ident.span();
    let ctx_arg = operation.context.map(|_| quote_spanned!(span=> __ctx));
    let input_arg = operation.input.map(|_| quote_spanned!(span=> __input));
    let ctx_param = ctx_arg.clone().unwrap_or_else(|| quote_spanned!(span=> _));
    let input_param = input_arg
        .clone()
        .unwrap_or_else(|| quote_spanned!(span=> _));
    let state = quote_spanned!(span=> __state);
    let args = [Some(state.clone()), ctx_arg, input_arg]
        .into_iter()
        .flatten();
    let call = quote_spanned!(ident.span()=> Self::#moved(#(#args),*));
    let body = match operation.returns {
        Returns::Result { .. } => call,
        _ => quote_spanned!(ident.span()=> ::core::result::Result::Ok(#call)),
    };
    let handle_ty = quote_spanned! {ident.span()=>
        ::durable_core::Operation<Self, #input_ty, #ok, #err>
    };
    // The handle's serde bounds are checked by this call.
    let new = quote_spanned! {ident.span()=>
        ::durable_core::Operation::__new(
            #name,
            ::durable_core::OperationKind::#kind,
            |#state, #ctx_param, #input_param| #body,
        )
    };
    let handle: ImplItem = syn::parse_quote! {
        #(#docs)*
        // The adapter is a closure even where it only forwards, to coerce the state and
        // the context to the references the operation takes.
        #[allow(non_upper_case_globals, clippy::redundant_closure)]
        #vis const #ident: #handle_ty = #new;
    };
    let mut moved_fn: ImplItemFn = function.clone();
    moved_fn.sig.ident = moved;
    moved_fn.vis = Visibility::Inherited;
    moved_fn.attrs = rest.into_iter().cloned().collect();
    moved_fn.attrs.push(syn::parse_quote!(#[doc(hidden)]));
    vec![handle, ImplItem::Fn(moved_fn)]
}

/// `impl Entity for State`.
fn entity_impl(
    entity: &EntityImpl<'_>,
    args: &EntityArgs,
    operations: &[Operation<'_>],
) -> TokenStream {
    let self_ty = entity.self_ty;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => {
            let ident = last_segment(self_ty).expect("checked: a named state type");
            LitStr::new(&ident.unraw().to_string(), ident.span())
        }
    };
    let initial = match &args.init {
        Some(init) => quote_spanned!(init.span()=> #init()),
        None => quote_spanned!(self_ty.span()=> <Self as ::core::default::Default>::default()),
    };
    let idents: Vec<_> = operations.iter().map(Operation::ident).collect();
    let names = operations
        .iter()
        .map(|operation| LitStr::new(&operation.name(), Span::call_site()));
    // Spanned on the state type: a state without serde's traits is reported there.
    let header = quote_spanned!(self_ty.span()=> impl ::durable_core::Entity for);
    quote! {
        #[allow(deprecated)]
        #header #self_ty {
            const NAME: &'static str = #name;
            const OPERATIONS: &'static [::durable_core::OperationInfo] = &[
                #(Self::#idents.info()),*
            ];
            fn initial() -> Self {
                #initial
            }
            fn apply(
                &mut self,
                operation: &str,
                input: &[u8],
                ctx: &mut ::durable_core::EntityContext,
            ) -> ::core::option::Option<
                ::core::result::Result<::std::vec::Vec<u8>, ::durable_core::__private::Applied>,
            > {
                match operation {
                    #(#names => ::core::option::Option::Some(
                        Self::#idents.__apply(self, ctx, input),
                    ),)*
                    _ => {
                        let _ = (input, ctx);
                        ::core::option::Option::None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{args, ast, valid};

    fn expand(args: TokenStream, item: TokenStream) -> String {
        let item = ast::parse_item(item).unwrap();
        let entity = EntityImpl::new(&item);
        let operations = valid::check(&entity).unwrap();
        generate(&entity, &args::parse(args).unwrap(), &operations).to_string()
    }

    #[test]
    fn turns_each_operation_into_a_handle_and_a_hidden_method() {
        let text = expand(
            quote!(name = "bank-account", init = Account::opened),
            quote! {
                impl Account {
                    /// Adds.
                    #[must_use]
                    pub fn deposit(&mut self, ctx: &mut EntityContext, amount: i64) -> i64 { 0 }
                    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> { Ok(0) }
                    pub fn balance(&self) -> i64 { 0 }
                    fn helper(&self) {}
                }
            },
        );
        for expected in [
            "# [doc = r\" Adds.\"] # [allow (non_upper_case_globals , clippy :: redundant_closure)] pub const deposit : :: durable_core :: Operation < Self , i64 , i64 , :: durable_core :: NoError >",
            "| __state , __ctx , __input | :: core :: result :: Result :: Ok (Self :: __operation_deposit (__state , __ctx , __input))",
            "# [must_use] # [doc (hidden)] fn __operation_deposit (& mut self , ctx : & mut EntityContext , amount : i64) -> i64",
            "pub const withdraw : :: durable_core :: Operation < Self , i64 , i64 , String >",
            "| __state , _ , __input | Self :: __operation_withdraw (__state , __input)",
            ":: durable_core :: OperationKind :: Read",
            "| __state , _ , _ | :: core :: result :: Result :: Ok (Self :: __operation_balance (__state))",
            "fn helper (& self) { }",
            "const NAME : & 'static str = \"bank-account\"",
            "[Self :: deposit . info () , Self :: withdraw . info () , Self :: balance . info ()]",
            "fn initial () -> Self { Account :: opened () }",
            "\"balance\" => :: core :: option :: Option :: Some (Self :: balance . __apply (self , ctx , input) ,) ,",
        ] {
            assert!(text.contains(expected), "{expected}\n  not in\n{text}");
        }
    }

    #[test]
    fn names_the_entity_after_its_type_and_starts_from_default() {
        let text = expand(quote!(), quote!(impl bank::r#Account {}));
        assert!(
            text.contains("const NAME : & 'static str = \"Account\""),
            "{text}"
        );
        assert!(
            text.contains("< Self as :: core :: default :: Default > :: default ()"),
            "{text}"
        );
    }
}
