//! The signature rules, one `check_*` function each, all run so that every mistake is
//! reported at once (DETERMINISM.md rule 15: `async fn name(ctx, input) -> Result<U, E>`).
//!
//! Types themselves (the context type, serde bounds, `Display` on the error) are not
//! checked here: the generated trait impl makes rustc check them on the user's tokens.

use syn::visit::Visit;
use syn::{PatType, Type};

use crate::ast::{Function, Handle, Kind, Output, last_segment};
use crate::context;
use crate::errors::Errors;
use crate::symbol::{ACTIVITY_CONTEXT, ORCHESTRATION_CONTEXT};

/// Runs every rule; returns the checked handle, or all the errors combined.
pub(crate) fn check<'a>(kind: Kind, function: &Function<'a>) -> syn::Result<Handle<'a>> {
    let mut errors = Errors::new();
    errors.take(check_async(kind, function));
    errors.take(check_no_receiver(kind, function));
    let params = errors.take(check_params(kind, function));
    let result = errors.take(check_returns_result(kind, function));
    errors.take(check_not_generic(kind, function));
    errors.take(check_not_const(kind, function));
    errors.take(check_not_unsafe(kind, function));
    errors.take(check_no_abi(kind, function));
    errors.take(check_not_variadic(kind, function));
    errors.take(check_no_impl_trait(kind, function));
    errors.take(check_owned_types(kind, function));
    let handle = params
        .zip(result)
        .map(|((ctx, input), (result, ok, err))| Handle {
            attrs: function.attrs,
            vis: function.vis,
            name: function.name,
            ctx,
            input,
            result,
            ok,
            err,
        });
    errors.finish(handle)
}

/// Rule: the function is `async`. The runtime polls the body as a future, and an
/// orchestrator suspends at every durable call.
fn check_async(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    match function.sig.asyncness {
        Some(_) => Ok(()),
        None => Err(kind.signature_error(function.sig.fn_token, "add `async` before `fn`")),
    }
}

/// Rule: no `self` receiver. The handle is a unit struct the runtime calls by itself;
/// there is no value to call a method on.
fn check_no_receiver(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    match function.receiver {
        None => Ok(()),
        Some(receiver) => Err(kind.signature_error(
            receiver,
            "remove the `self` parameter and move the function out of the `impl` block: the handle is a free function",
        )),
    }
}

/// Rule: exactly two parameters, the context then the input. Returns them.
fn check_params<'a>(
    kind: Kind,
    function: &Function<'a>,
) -> syn::Result<(&'a PatType, &'a PatType)> {
    let params = &function.params;
    match params.as_slice() {
        [ctx, input] => Ok((ctx, input)),
        [] => Err(kind.signature_error_at(
            function.sig.paren_token.span.join(),
            &format!(
                "add the context and the input: `(ctx: {}, input: T)` (`_input: ()` if it takes no input)",
                kind.context()
            ),
        )),
        [only] if is_context(only) => Err(kind.signature_error(
            only,
            "add the input after the context (`_input: ()` if it takes no input)",
        )),
        [only] => Err(kind.signature_error(
            only,
            &format!(
                "the context comes first: add `ctx: {}` before the input",
                kind.context()
            ),
        )),
        [_, _, extra @ ..] => {
            let extra = extra.iter();
            Err(kind.signature_error(
                quote::quote!(#(#extra),*),
                "it takes a single input: pass several values as one tuple `(a, b): (A, B)` or a struct",
            ))
        }
    }
}

/// Whether a parameter's type is a context, of either kind. Only picks the wording of an
/// error; the real check is rustc's, on the generated call.
fn is_context(param: &PatType) -> bool {
    [ORCHESTRATION_CONTEXT, ACTIVITY_CONTEXT]
        .into_iter()
        .any(|symbol| context::is_type(&param.ty, symbol))
}

/// Rule: the return type is `Result<U, E>`. Its two halves become the handle's `Output`
/// and `Error`, recorded in history. Returns the whole type and the halves.
fn check_returns_result<'a>(
    kind: Kind,
    function: &Function<'a>,
) -> syn::Result<(&'a Type, &'a Type, &'a Type)> {
    match function.output {
        Output::Result { ty, ok, err } => Ok((ty, ok, err)),
        Output::Missing => Err(kind.signature_error(
            function.sig,
            "add the return type `-> Result<U, E>`, e.g. `-> Result<(), String>`",
        )),
        Output::Other(ty) if last_segment(ty).is_some_and(|name| name == "Result") => {
            Err(kind.signature_error(
                ty,
                "write both type arguments, `Result<U, E>`: an alias such as `anyhow::Result<U>` hides the error type the handle records",
            ))
        }
        Output::Other(ty) => Err(kind.signature_error(
            ty,
            "return a `Result`, e.g. `Result<U, String>` if nothing can fail",
        )),
    }
}

/// Rule: no generic parameters and no `where` clause. A handle is one concrete type,
/// registered and recorded under one name.
fn check_not_generic(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    let generics = &function.sig.generics;
    if generics.params.is_empty() && generics.where_clause.is_none() {
        return Ok(());
    }
    let where_clause = &generics.where_clause;
    Err(kind.signature_error(
        quote::quote!(#generics #where_clause),
        "remove the generic parameters: a handle is one concrete type, so name concrete input and output types (an enum if it takes several shapes)",
    ))
}

/// Rule: not `const`. The body runs as a future at run time.
fn check_not_const(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    match function.sig.constness {
        None => Ok(()),
        Some(token) => Err(kind.signature_error(token, "remove `const`")),
    }
}

/// Rule: not `unsafe`. The runtime calls the body through a safe trait method, with no
/// way to uphold a safety contract.
fn check_not_unsafe(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    match function.sig.unsafety {
        None => Ok(()),
        Some(token) => Err(kind.signature_error(
            token,
            "remove `unsafe`: the runtime calls it as a safe function; put `unsafe` blocks inside the body",
        )),
    }
}

/// Rule: no `extern "ABI"`. The runtime calls the body through its Rust handle.
fn check_no_abi(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    match &function.sig.abi {
        None => Ok(()),
        Some(abi) => Err(kind.signature_error(
            abi,
            "remove the `extern` ABI: the runtime calls it through its handle, not across an ABI",
        )),
    }
}

/// Rule: not variadic. The input is one serialized value.
fn check_not_variadic(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    match &function.sig.variadic {
        None => Ok(()),
        Some(variadic) => Err(kind.signature_error(
            variadic,
            "remove the variadic `...`: it takes a single input, a tuple or a struct for several values",
        )),
    }
}

/// Rule: no `impl Trait` in the input, output or error type. Each is stored in history
/// and deserialized on replay, so it must be a type the handle can name.
fn check_no_impl_trait(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    let mut errors = Errors::new();
    for (role, ty) in data_types(function) {
        let mut found = ImplTraits::default();
        found.visit_type(ty);
        for impl_trait in found.0 {
            errors.push(kind.signature_error(
                impl_trait,
                &format!(
                    "name a concrete type instead of `impl Trait`: the {role} is stored in history and deserialized on replay, so the handle needs its type"
                ),
            ));
        }
    }
    errors.check()
}

/// Rule: the input, output and error types own their data. They are deserialized from
/// history (`DeserializeOwned`) and outlive the call.
fn check_owned_types(kind: Kind, function: &Function<'_>) -> syn::Result<()> {
    let mut errors = Errors::new();
    for (role, ty) in data_types(function) {
        let mut found = References::default();
        found.visit_type(ty);
        for reference in found.0 {
            errors.push(kind.signature_error(
                reference,
                &format!(
                    "take an owned type, e.g. `String` for `&str` or `Vec<T>` for `&[T]`: the {role} is deserialized from history and must own its data"
                ),
            ));
        }
    }
    errors.check()
}

/// The types stored in history, whichever are present: the second parameter's type and
/// the two halves of the `Result`.
fn data_types<'a>(function: &Function<'a>) -> Vec<(&'static str, &'a Type)> {
    let mut types = Vec::new();
    if let Some(input) = function.params.get(1) {
        types.push(("input", &*input.ty));
    }
    if let Output::Result { ok, err, .. } = function.output {
        types.push(("output", ok));
        types.push(("error", err));
    }
    types
}

#[derive(Default)]
struct ImplTraits<'a>(Vec<&'a syn::TypeImplTrait>);

impl<'a> Visit<'a> for ImplTraits<'a> {
    fn visit_type_impl_trait(&mut self, node: &'a syn::TypeImplTrait) {
        self.0.push(node);
    }
}

#[derive(Default)]
struct References<'a>(Vec<&'a syn::TypeReference>);

impl<'a> Visit<'a> for References<'a> {
    fn visit_type_reference(&mut self, node: &'a syn::TypeReference) {
        self.0.push(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::{ItemFn, parse_quote};

    fn messages(kind: Kind, item: ItemFn) -> Vec<String> {
        match check(kind, &Function::new(&item)) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_the_documented_form() {
        let item: ItemFn = parse_quote! {
            /// Docs.
            #[allow(unused_mut)]
            pub async fn chain(mut ctx: OrchestrationContext, _: ()) -> Result<u32, String> {
                Ok(1)
            }
        };
        let handle = check(Kind::Orchestrator, &Function::new(&item)).unwrap();
        assert_eq!(handle.name, "chain");
        assert_eq!(handle.attrs.len(), 2);
    }

    #[test]
    fn reports_every_broken_rule_at_once() {
        let all = messages(
            Kind::Orchestrator,
            parse_quote! {
                const unsafe extern "C" fn f<T>(&self, a: impl Copy, b: &str, c: u8) {}
            },
        );
        let fixes = [
            "add `async`",
            "remove the `self` parameter",
            "a single input",
            "add the return type",
            "remove the generic parameters",
            "remove `const`",
            "remove `unsafe`",
            "remove the `extern` ABI",
            "take an owned type",
        ];
        assert_eq!(all.len(), fixes.len(), "{all:#?}");
        for (message, fix) in all.iter().zip(fixes) {
            assert!(
                message.starts_with("an #[orchestrator] must be `async fn name(ctx: OrchestrationContext, input: T) -> Result<U, E>`; "),
                "{message}"
            );
            assert!(message.contains(fix), "{message} lacks {fix}");
        }
    }

    #[test]
    fn words_a_single_parameter_by_what_is_missing() {
        let missing_input = messages(
            Kind::Activity,
            parse_quote!(
                async fn f(ctx: ActivityContext) -> Result<(), String> {}
            ),
        );
        assert!(missing_input[0].contains("add the input after the context"));
        let missing_context = messages(
            Kind::Activity,
            parse_quote!(
                async fn f(input: u32) -> Result<(), String> {}
            ),
        );
        assert!(missing_context[0].contains("add `ctx: ActivityContext` before the input"));
    }

    #[test]
    fn tells_result_aliases_from_other_types() {
        let alias = messages(
            Kind::Activity,
            parse_quote!(
                async fn f(ctx: ActivityContext, i: u32) -> anyhow::Result<u32> {}
            ),
        );
        assert!(alias[0].contains("write both type arguments"));
        let other = messages(
            Kind::Activity,
            parse_quote!(
                async fn f(ctx: ActivityContext, i: u32) -> u32 {}
            ),
        );
        assert!(other[0].contains("return a `Result`"));
    }

    #[test]
    fn rejects_borrowed_and_opaque_data_anywhere_in_a_type() {
        let all = messages(
            Kind::Activity,
            parse_quote! {
                async fn f(ctx: ActivityContext, i: Vec<&str>) -> Result<impl Copy, &'static str> {}
            },
        );
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(all[0].contains("the output is stored in history"));
        assert!(all[1].contains("the input is deserialized from history"));
        assert!(all[2].contains("the error is deserialized from history"));
    }
}
