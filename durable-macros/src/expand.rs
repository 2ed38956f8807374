//! Generation: the typed handle for a checked function.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Attribute, Block, LitStr};

use crate::ast::{self, Function, Handle, Kind};
use crate::attribute_args::{self, AttributeArgs};
use crate::context::{Owner, Parameters};
use crate::errors::Errors;
use crate::{body_check, callees, continue_as_new, valid};

/// Expands `#[orchestrator]` or `#[activity]`: arguments, signature, an orchestrator's
/// body, then the handle.
pub(crate) fn handle(kind: Kind, args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item = ast::parse_item(kind, item)?;
    let function = Function::new(&item);
    let params = Parameters::of(Owner::Orchestrator, function.params.iter().copied());
    let mut errors = Errors::new();
    let args = errors.take(attribute_args::parse(kind, args));
    let handle = errors.take(valid::check(kind, &function));
    let body = check_body(kind, &function, &params);
    let Some((args, handle)) = args.zip(handle) else {
        // The signature breaks a rule: no handle, every error.
        errors.take(body);
        return errors.finish(None);
    };
    errors.check()?;
    let callees = list_callees(kind, &function, &params);
    match body {
        Ok(body) => Ok(generate(kind, &args, &handle, &params, &body, &callees)),
        // Only the body breaks a rule: the handle is still generated (with the body as
        // written), so the places that register or call it report nothing unrelated.
        Err(error) => {
            let errors = error.to_compile_error();
            let handle = generate(kind, &args, &handle, &params, function.body, &callees);
            Ok(quote!(#errors #handle))
        }
    }
}

/// An orchestrator's body is replayed: checks it for the hazards of DETERMINISM.md and
/// returns it with its helper calls rewritten. An activity's body runs once per attempt
/// and may do anything.
fn check_body(kind: Kind, function: &Function<'_>, params: &Parameters) -> syn::Result<Block> {
    if kind == Kind::Activity {
        return Ok(function.body.clone());
    }
    let subject = format!("orchestrator `{}`", function.name.unraw());
    body_check::check(&subject, params, function.body)
}

/// For an orchestrator, the statements that list the handles its body calls (see
/// `callees.rs`); empty for an activity.
fn list_callees(kind: Kind, function: &Function<'_>, params: &Parameters) -> TokenStream {
    if kind == Kind::Activity {
        return TokenStream::new();
    }
    callees::list(params, function.body)
}

/// What is emitted when there are errors: the errors, and the user's function so that
/// the rest of the crate still sees an item by that name and reports nothing unrelated
/// (tokio's and thiserror's approach).
///
/// The function is emitted as written, except for a C-variadic `...`: rustc rejects it
/// on any Rust function with half a dozen errors of its own, burying the macro's.
pub(crate) fn with_errors(item: TokenStream, error: &syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(mut function) if function.sig.variadic.is_some() => {
            function.sig.variadic = None;
            quote!(#errors #function)
        }
        _ => quote!(#errors #item),
    }
}

fn generate(
    kind: Kind,
    args: &AttributeArgs,
    handle: &Handle<'_>,
    params: &Parameters,
    body: &Block,
    callees: &TokenStream,
) -> TokenStream {
    let Handle {
        vis,
        name,
        ctx,
        input,
        result,
        ok,
        err,
        ..
    } = handle;
    let attrs = Attrs::split(handle.attrs);
    let (struct_attrs, fn_attrs, cfgs) = (&attrs.on_struct, &attrs.on_fn, &attrs.cfg);
    // A deprecated handle (an old orchestrator version kept for instances in flight)
    // warns where users name it, not in its own impls.
    let allow_deprecated = attrs.deprecated.then(|| quote!(#[allow(deprecated)]));

    let registered = match &args.name {
        Some(custom) => custom.clone(),
        None => LitStr::new(&name.unraw().to_string(), name.span()),
    };
    let trait_path = match kind {
        Kind::Orchestrator => quote!(::durable_core::Orchestrator),
        Kind::Activity => quote!(::durable_core::Activity),
    };
    // `line!()` reports the line of the invocation its span points at: with the fn
    // name's span, that is the line the user wrote `fn name` on.
    let line = match kind {
        Kind::Orchestrator => quote_spanned!(name.span()=> const LINE: u32 = ::core::line!();),
        Kind::Activity => TokenStream::new(),
    };
    let version = args
        .version
        .as_ref()
        .map(|v| quote_spanned!(v.span()=> const VERSION: u32 = #v;));
    let limits = flow_limits(kind, args);
    // The trait method takes the context as the user typed it, so a context of the
    // wrong kind is reported on the user's type against the trait's signature: "expected
    // `OrchestrationContext`, found `ActivityContext`".
    let ctx_ty = &ctx.ty;
    let input_ty = &input.ty;
    // Also on a body that broke a rule: a wrong `continue_as_new` input is reported with
    // the rest.
    let typed;
    let body = match kind {
        Kind::Orchestrator => {
            typed = continue_as_new::type_the_input(body, params, input_ty);
            &typed
        }
        Kind::Activity => body,
    };
    // Spanned on the fn name, so a body whose future is not `Send` is reported there.
    let boxed = quote_spanned! {name.span()=>
        ::std::boxed::Box::pin(#name::run(ctx, input))
    };
    // The handles the body calls, for the runtime's check at start. Named beside the
    // function, where a deprecated one is the orchestrator's business, not a warning.
    let callees = (!callees.is_empty()).then(|| {
        quote! {
            #[allow(deprecated)]
            fn callees() -> ::std::vec::Vec<::durable_core::Callee> {
                #[allow(unused_imports)]
                use ::durable_core::__private::{
                    ActivityProbe as _, EntityProbe as _, NotAHandle as _, OrchestratorProbe as _,
                };
                let mut callees = ::std::vec::Vec::new();
                #callees
                callees
            }
        }
    });
    let run_doc = format!(
        " Runs the {} body directly (the original function).",
        kind.noun()
    );

    quote! {
        #(#struct_attrs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #name;

        #(#cfgs)*
        #allow_deprecated
        impl #name {
            #[doc = #run_doc]
            // The errors are the user's `E`, documented on the handle, not on this fn.
            #[allow(clippy::missing_errors_doc)]
            #(#fn_attrs)*
            #vis async fn run(#ctx, #input) -> #result #body
        }

        #(#cfgs)*
        #allow_deprecated
        impl #trait_path for #name {
            type Input = #input_ty;
            type Output = #ok;
            type Error = #err;
            const NAME: &'static str = #registered;
            #version
            #line
            #callees
            #limits
            fn run(
                ctx: #ctx_ty,
                input: Self::Input,
            ) -> ::durable_core::__private::BoxFuture<
                ::core::result::Result<Self::Output, Self::Error>,
            > {
                #boxed
            }
        }
    }
}

/// `Activity::limits` or `Orchestrator::limits` for the flow-control arguments; nothing
/// without them.
fn flow_limits(kind: Kind, args: &AttributeArgs) -> Option<TokenStream> {
    if kind == Kind::Orchestrator {
        let n = args.max_running?;
        return Some(quote! {
            fn limits() -> ::durable_core::__private::OrchestratorLimits {
                ::durable_core::__private::OrchestratorLimits::new().max_running(#n)
            }
        });
    }
    if args.concurrency.is_none() && args.rate.is_none() && args.priority.is_none() {
        return None;
    }
    let concurrency = args.concurrency.map(|n| quote!(.concurrency(#n)));
    let rate = args
        .rate
        .map(|(starts, ms)| quote!(.rate(#starts, ::core::time::Duration::from_millis(#ms))));
    let priority = args.priority.map(|p| quote!(.priority(#p)));
    Some(quote! {
        fn limits() -> ::durable_core::__private::ActivityLimits {
            ::durable_core::__private::ActivityLimits::new() #concurrency #rate #priority
        }
    })
}

/// The function's attributes, sorted by the generated item they belong on.
struct Attrs<'a> {
    /// Docs and lint levels: the handle is what users see and name.
    on_struct: Vec<&'a Attribute>,
    /// Lint levels and everything else (`#[expect]`, `#[tracing::instrument]`, ...):
    /// they are about the body, which lives in the inherent `run`.
    on_fn: Vec<&'a Attribute>,
    /// `#[cfg]`: on every generated item, so they come and go together.
    cfg: Vec<&'a Attribute>,
    /// Whether the struct carries `#[deprecated]`.
    deprecated: bool,
}

impl<'a> Attrs<'a> {
    fn split(attrs: &'a [Attribute]) -> Self {
        let mut split = Attrs {
            on_struct: Vec::new(),
            on_fn: Vec::new(),
            cfg: Vec::new(),
            deprecated: false,
        };
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("cfg") {
                split.on_struct.push(attr);
                split.cfg.push(attr);
            } else if path.is_ident("doc") {
                split.on_struct.push(attr);
            } else if path.is_ident("deprecated") {
                split.on_struct.push(attr);
                split.deprecated = true;
            } else if ["allow", "warn", "deny", "forbid"]
                .iter()
                .any(|level| path.is_ident(level))
            {
                split.on_struct.push(attr);
                split.on_fn.push(attr);
            } else {
                split.on_fn.push(attr);
            }
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> syn::File {
        syn::parse2(handle(kind, args, item).unwrap()).unwrap()
    }

    #[test]
    fn generates_a_struct_its_body_and_the_trait_impl() {
        let file = expand(
            Kind::Orchestrator,
            quote!(name = "custom"),
            quote! {
                /// Docs.
                #[cfg(all())]
                #[allow(unused_variables)]
                #[tracing::instrument]
                pub async fn flow(ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
                    Ok(n)
                }
            },
        );
        let [
            syn::Item::Struct(handle),
            syn::Item::Impl(inherent),
            syn::Item::Impl(trait_impl),
        ] = file.items.as_slice()
        else {
            panic!("unexpected items: {}", quote!(#file));
        };
        let attrs = |attrs: &[Attribute]| -> Vec<String> {
            attrs
                .iter()
                .map(|a| a.path().get_ident().map_or("?".into(), |i| i.to_string()))
                .collect()
        };
        assert_eq!(handle.ident, "flow");
        assert_eq!(
            attrs(&handle.attrs),
            ["doc", "cfg", "allow", "allow", "derive"]
        );
        assert_eq!(attrs(&inherent.attrs), ["cfg"]);
        let syn::ImplItem::Fn(run) = &inherent.items[0] else {
            panic!("no inherent run");
        };
        assert_eq!(attrs(&run.attrs), ["doc", "allow", "allow", "?"]);
        assert_eq!(attrs(&trait_impl.attrs), ["cfg"]);
        let text = quote!(#trait_impl).to_string();
        assert!(
            text.contains("const NAME : & 'static str = \"custom\""),
            "{text}"
        );
        assert!(
            text.contains("const LINE : u32 = :: core :: line ! ()"),
            "{text}"
        );
    }

    #[test]
    fn activities_have_no_line() {
        let file = expand(
            Kind::Activity,
            TokenStream::new(),
            quote!(
                async fn step(ctx: ActivityContext, n: u32) -> Result<u32, String> {
                    Ok(n)
                }
            ),
        );
        let text = quote!(#file).to_string();
        assert!(
            text.contains("impl :: durable_core :: Activity for step"),
            "{text}"
        );
        assert!(
            text.contains("const NAME : & 'static str = \"step\""),
            "{text}"
        );
        assert!(!text.contains("LINE"), "{text}");
    }

    #[test]
    fn types_continue_as_new_with_the_orchestrators_input() {
        let text = |kind, item| handle(kind, TokenStream::new(), item).unwrap().to_string();
        let typed = "context . continue_as_new :: < Round , _ > (round)";
        let orchestrator = text(
            Kind::Orchestrator,
            quote!(
                async fn f(context: OrchestrationContext, round: Round) -> Result<u32, String> {
                    context.continue_as_new(round).await
                }
            ),
        );
        assert!(orchestrator.contains(typed), "{orchestrator}");
        // Still typed next to the errors of a body that breaks a rule.
        let with_hazard = text(
            Kind::Orchestrator,
            quote!(
                async fn f(context: OrchestrationContext, round: Round) -> Result<u32, String> {
                    let _ = SystemTime::now();
                    context.continue_as_new(round).await
                }
            ),
        );
        assert!(with_hazard.contains("compile_error"), "{with_hazard}");
        assert!(with_hazard.contains(typed), "{with_hazard}");
        let activity = text(
            Kind::Activity,
            quote!(
                async fn f(context: ActivityContext, round: Round) -> Result<u32, String> {
                    context.continue_as_new(round).await
                }
            ),
        );
        assert!(!activity.contains(":: < Round"), "{activity}");
    }

    #[test]
    fn keeps_the_function_next_to_the_errors() {
        let item = quote!(
            fn f(ctx: Ctx, a: u32, ...) {}
        );
        let error = handle(Kind::Activity, TokenStream::new(), item.clone()).unwrap_err();
        let out = with_errors(item, &error).to_string();
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.contains("fn f (ctx : Ctx , a : u32 ,) { }"), "{out}");
    }
}
