//! The rules of an `#[entity]` impl block and of its operations, one `check_*` function
//! each, all run so that every mistake is reported at once.
//!
//! Types themselves (serde bounds on the state, input, output and error, `Display` on the
//! error, that the context really is `durable_core::EntityContext`) are not checked here:
//! the generated handles and trait impl make rustc check them on the user's tokens.

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{ImplItemFn, PatType, Type};

use crate::ast::{Output, last_segment, split_result};
use crate::context;
use crate::entity::ast::{Access, EntityImpl, Operation, Returns, params};
use crate::errors::Errors;
use crate::symbol::ENTITY_CONTEXT;

/// The accepted operation signature, as shown in every signature error.
const FORM: &str = "pub fn name(&mut self, ctx: &mut EntityContext, input: T) -> Result<U, E>` \
     (`&self` for a read; the context, the input and the `Result` each optional)";

fn error(tokens: impl ToTokens, fix: &str) -> syn::Error {
    syn::Error::new_spanned(tokens, message(fix))
}

fn error_at(span: Span, fix: &str) -> syn::Error {
    syn::Error::new(span, message(fix))
}

fn message(fix: &str) -> String {
    format!("an #[entity] operation must be `{FORM}; {fix}")
}

/// Runs every rule; returns the checked operations, or all the errors combined.
pub(crate) fn check<'a>(entity: &EntityImpl<'a>) -> syn::Result<Vec<Operation<'a>>> {
    let mut errors = Errors::new();
    errors.take(check_impl_not_generic(entity));
    errors.take(check_state_type_named(entity));
    let mut operations = Some(Vec::new());
    for function in &entity.operations {
        let operation = errors.take(check_operation(function));
        operations = operations.zip(operation).map(|(mut all, one)| {
            all.push(one);
            all
        });
    }
    errors.finish(operations)
}

/// Rule: the impl block is not generic. An entity is one concrete state type, registered
/// and stored under one name.
fn check_impl_not_generic(entity: &EntityImpl<'_>) -> syn::Result<()> {
    let generics = &entity.item.generics;
    if generics.params.is_empty() && generics.where_clause.is_none() {
        return Ok(());
    }
    let where_clause = &generics.where_clause;
    Err(syn::Error::new_spanned(
        quote::quote!(#generics #where_clause),
        "an #[entity] impl block is not generic: an entity is one concrete state type, stored under one name; name a concrete type",
    ))
}

/// Rule: the state type is a named type (`Account`, `bank::Account`): its last path
/// segment is the entity's name unless `name = "..."` gives one.
fn check_state_type_named(entity: &EntityImpl<'_>) -> syn::Result<()> {
    match last_segment(entity.self_ty) {
        Some(_) => Ok(()),
        None => Err(syn::Error::new_spanned(
            entity.self_ty,
            "#[entity] applies to the impl block of a named state type (a struct or an enum): `impl Account { .. }`",
        )),
    }
}

/// Every rule of one operation; the checked operation, or every error.
fn check_operation(function: &ImplItemFn) -> syn::Result<Operation<'_>> {
    let mut errors = Errors::new();
    errors.take(check_not_async(function));
    let access = errors.take(check_receiver(function));
    errors.take(check_not_generic(function));
    errors.take(check_not_unsafe(function));
    errors.take(check_no_abi(function));
    errors.take(check_no_cfg(function));
    // A receiver that breaks its rule is taken as `&mut self`, so the parameters are
    // still checked.
    let params = errors.take(check_params(function, access.unwrap_or(Access::Write)));
    let returns = errors.take(check_returns(function));
    errors.take(check_data_types(function));
    let operation = access
        .zip(params)
        .zip(returns)
        .map(|((access, (context, input)), returns)| Operation {
            function,
            access,
            context,
            input,
            returns,
        });
    errors.finish(operation)
}

/// Rule: an operation is synchronous. It runs to completion inside one turn of its
/// entity, and its state change and signals are committed with that turn: there is no
/// point at which it could wait. (Durable Functions runs entity operations one at a time
/// for the same reason.)
fn check_not_async(function: &ImplItemFn) -> syn::Result<()> {
    match function.sig.asyncness {
        None => Ok(()),
        Some(token) => Err(error(
            token,
            "remove `async`: an operation runs to completion inside one turn, its state change and signals committed with it, so it cannot await; do asynchronous work in an activity and signal the entity with the result",
        )),
    }
}

/// Rule: the receiver is `&mut self` (an operation that may change the state) or `&self`
/// (a read). Not `self` by value: the state lives on after the operation.
fn check_receiver(function: &ImplItemFn) -> syn::Result<Access> {
    let (receiver, _) = params(function);
    let receiver = receiver.expect("an operation has a receiver");
    match (&receiver.reference, &receiver.mutability) {
        (Some(_), Some(_)) => Ok(Access::Write),
        (Some(_), None) => Ok(Access::Read),
        (None, _) => Err(error(
            receiver,
            "take `&mut self` to change the state or `&self` to read it: the state outlives the operation, so it is not taken by value (make the function private, or drop `self`, to keep it a helper)",
        )),
    }
}

/// Rule: no generic parameters. A handle is one concrete type: its input is decoded
/// from the message by that type.
fn check_not_generic(function: &ImplItemFn) -> syn::Result<()> {
    let generics = &function.sig.generics;
    let types = generics
        .params
        .iter()
        .any(|param| !matches!(param, syn::GenericParam::Lifetime(_)));
    if !types && generics.where_clause.is_none() {
        return Ok(());
    }
    let where_clause = &generics.where_clause;
    Err(error(
        quote::quote!(#generics #where_clause),
        "remove the generic parameters: an operation's handle is one concrete type, so name concrete input and output types (an enum if it takes several shapes)",
    ))
}

/// Rule: not `unsafe`. The runtime calls it through a safe handle.
fn check_not_unsafe(function: &ImplItemFn) -> syn::Result<()> {
    match function.sig.unsafety {
        None => Ok(()),
        Some(token) => Err(error(
            token,
            "remove `unsafe`: the runtime calls it through a safe handle; put `unsafe` blocks inside the body",
        )),
    }
}

/// Rule: no `extern "ABI"`. The runtime calls it through its handle.
fn check_no_abi(function: &ImplItemFn) -> syn::Result<()> {
    match &function.sig.abi {
        None => Ok(()),
        Some(abi) => Err(error(abi, "remove the `extern` ABI")),
    }
}

/// Rule: no `#[cfg]` on one operation: the entity's list of operations and its dispatch
/// name every operation, so they come and go with the whole impl block.
fn check_no_cfg(function: &ImplItemFn) -> syn::Result<()> {
    match function
        .attrs
        .iter()
        .find(|attr| attr.path().is_ident("cfg"))
    {
        None => Ok(()),
        Some(attr) => Err(error(
            attr,
            "move the `#[cfg]` to the whole impl block, or the operation to a second `#[entity]`-less impl block as a helper",
        )),
    }
}

/// Rule: after the receiver, at most an `&EntityContext` (or `&mut`; first) and at most
/// one input. A read takes the context shared, so it sends no signals. Returns them.
fn check_params(
    function: &ImplItemFn,
    access: Access,
) -> syn::Result<(Option<&PatType>, Option<&PatType>)> {
    let (_, params) = params(function);
    let mut errors = Errors::new();
    let mut context = None;
    let mut inputs = Vec::new();
    for (position, param) in params.iter().copied().enumerate() {
        if !context::is_type(&param.ty, ENTITY_CONTEXT) {
            inputs.push(param);
            continue;
        }
        if position > 0 || context.is_some() {
            errors.push(error(param, "the context comes first after `self`, once"));
            continue;
        }
        match (crate::ast::peel(&param.ty), access) {
            (Type::Reference(reference), Access::Read) if reference.mutability.is_some() => {
                errors.push(error(
                    &param.ty,
                    "a read (`&self`) takes `&EntityContext`: it cannot send signals, which are effects; take `&mut self` to make it an operation that may",
                ));
            }
            (Type::Reference(_), _) => context = Some(param),
            _ => errors.push(error(
                &param.ty,
                "take the context by reference, `&mut EntityContext` (or `&EntityContext`): the runtime keeps it to collect the signals",
            )),
        }
    }
    if let [_, extra @ ..] = inputs.as_slice()
        && !extra.is_empty()
    {
        let extra = extra.iter();
        errors.push(error(
            quote::quote!(#(#extra),*),
            "it takes at most one input: pass several values as one tuple `(a, b): (A, B)` or a struct",
        ));
    }
    let input = inputs.first().copied();
    errors.finish(Some((context, input)))
}

/// Rule: it returns nothing, a value, or `Result<U, E>` with both arguments written (the
/// error is stored for the caller, so an alias hiding it is refused).
fn check_returns(function: &ImplItemFn) -> syn::Result<Returns<'_>> {
    let syn::ReturnType::Type(_, ty) = &function.sig.output else {
        return Ok(Returns::Unit);
    };
    match split_result(ty) {
        Output::Result { ok, err, .. } => Ok(Returns::Result { ok, err }),
        Output::Other(ty) if last_segment(ty).is_some_and(|name| name == "Result") => Err(error(
            ty,
            "write both type arguments, `Result<U, E>`: an alias such as `anyhow::Result<U>` hides the error type the handle carries",
        )),
        Output::Other(ty) => Ok(Returns::Value(ty)),
        Output::Missing => Err(error_at(
            function.sig.ident.span(),
            "unreachable: a return type was written",
        )),
    }
}

/// Rule: the input, output and error own their data and are named types: they are
/// stored as JSON and decoded back.
fn check_data_types(function: &ImplItemFn) -> syn::Result<()> {
    let (_, params) = params(function);
    let mut types: Vec<(&str, &Type)> = params
        .iter()
        .filter(|param| !context::is_type(&param.ty, ENTITY_CONTEXT))
        .map(|param| ("input", &*param.ty))
        .collect();
    if let syn::ReturnType::Type(_, ty) = &function.sig.output {
        match split_result(ty) {
            Output::Result { ok, err, .. } => types.extend([("output", ok), ("error", err)]),
            _ => types.push(("output", ty)),
        }
    }
    let mut errors = Errors::new();
    for (role, ty) in types {
        let mut found = Unowned::default();
        found.visit_type(ty);
        for reference in found.references {
            errors.push(error(
                reference,
                &format!(
                    "take an owned type, e.g. `String` for `&str` or `Vec<T>` for `&[T]`: the {role} is stored as JSON and decoded back, so it owns its data"
                ),
            ));
        }
        for impl_trait in found.impl_traits {
            errors.push(error(
                impl_trait,
                &format!(
                    "name a concrete type instead of `impl Trait`: the {role} is stored as JSON and decoded back, so the handle needs its type"
                ),
            ));
        }
    }
    errors.check()
}

#[derive(Default)]
struct Unowned<'a> {
    references: Vec<&'a syn::TypeReference>,
    impl_traits: Vec<&'a syn::TypeImplTrait>,
}

impl<'a> Visit<'a> for Unowned<'a> {
    fn visit_type_reference(&mut self, node: &'a syn::TypeReference) {
        self.references.push(node);
    }
    fn visit_type_impl_trait(&mut self, node: &'a syn::TypeImplTrait) {
        self.impl_traits.push(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::{ItemImpl, parse_quote};

    fn messages(item: ItemImpl) -> Vec<String> {
        match check(&EntityImpl::new(&item)) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn sorts_operations_reads_and_helpers() {
        let item: ItemImpl = parse_quote! {
            impl Account {
                pub fn deposit(&mut self, ctx: &mut EntityContext, amount: i64) {}
                pub fn balance(&self, ctx: &durable_core::EntityContext) -> i64 { 0 }
                pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> { Ok(0) }
                pub fn reset(&mut self) {}
                pub fn new() -> Self { todo!() }
                fn helper(&mut self, a: u8, b: u8) {}
                pub(crate) fn crate_helper(self) {}
            }
        };
        let entity = EntityImpl::new(&item);
        let operations = check(&entity).unwrap();
        let summary: Vec<_> = operations
            .iter()
            .map(|op| {
                (
                    op.name(),
                    op.access,
                    op.context.is_some(),
                    op.input.is_some(),
                    matches!(op.returns, Returns::Result { .. }),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("deposit".to_string(), Access::Write, true, true, false),
                ("balance".to_string(), Access::Read, true, false, false),
                ("withdraw".to_string(), Access::Write, false, true, true),
                ("reset".to_string(), Access::Write, false, false, false),
            ]
        );
    }

    #[test]
    fn reports_every_broken_rule_at_once() {
        let all = messages(parse_quote! {
            impl<T> Account<T> {
                pub async unsafe fn a<U>(self, input: &str, ctx: &mut EntityContext, more: u8) -> anyhow::Result<u8> {}
                pub fn b(&self, ctx: &mut EntityContext) -> impl Copy {}
                pub fn c(&mut self, ctx: EntityContext) {}
            }
        });
        let fixes = [
            "is not generic",
            "remove `async`",
            "take `&mut self` to change the state",
            "remove the generic parameters",
            "remove `unsafe`",
            "the context comes first",
            "at most one input",
            "write both type arguments",
            "take an owned type",
            "a read (`&self`) takes `&EntityContext`",
            "name a concrete type instead of `impl Trait`",
            "take the context by reference",
        ];
        assert_eq!(all.len(), fixes.len(), "{all:#?}");
        for (message, fix) in all.iter().zip(fixes) {
            assert!(message.contains(fix), "{message} lacks {fix}");
        }
    }

    #[test]
    fn refuses_a_misplaced_context_and_two_inputs() {
        let all = messages(parse_quote! {
            impl Account {
                pub fn a(&mut self, amount: i64, ctx: &mut EntityContext) {}
                pub fn b(&mut self, from: String, amount: i64) {}
            }
        });
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(all[0].contains("the context comes first"), "{}", all[0]);
        assert!(all[1].contains("at most one input"), "{}", all[1]);
    }
}
