//! The attribute's arguments: `#[orchestrator]`, `#[orchestrator(name = "custom")]`,
//! `#[orchestrator(name = "order", version = 2)]`.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::{LitInt, LitStr};

use crate::ast::Kind;
use crate::errors::Errors;

/// The parsed arguments.
#[derive(Debug, Default)]
pub(crate) struct AttributeArgs {
    /// `name = "..."`: the name registered and recorded in history instead of the fn's.
    pub(crate) name: Option<LitStr>,
    /// `version = N` (orchestrators only): the version registered under the name.
    pub(crate) version: Option<LitInt>,
}

/// Parses the arguments, reporting every argument that is wrong.
pub(crate) fn parse(kind: Kind, tokens: TokenStream) -> syn::Result<AttributeArgs> {
    let mut args = AttributeArgs::default();
    let mut errors = Errors::new();
    let parser = syn::meta::parser(|meta| {
        errors.take(parse_one(kind, &mut args, &meta));
        Ok(())
    });
    let parsed = syn::parse::Parser::parse2(parser, tokens);
    errors.take(parsed);
    errors.check()?;
    Ok(args)
}

fn parse_one(kind: Kind, args: &mut AttributeArgs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let usage = format!("#[{}(name = \"...\")]", kind.noun());
    if kind == Kind::Orchestrator && meta.path.is_ident("version") {
        return parse_version(args, meta);
    }
    if !meta.path.is_ident("name") {
        skip_value(meta)?;
        let known = match kind {
            Kind::Orchestrator => "the arguments are the registered name and version: \
                 `#[orchestrator(name = \"...\", version = 2)]`"
                .to_string(),
            Kind::Activity => format!("the only argument is the registered name: `{usage}`"),
        };
        return Err(meta.error(format!("unknown argument to {}; {known}", kind.attribute())));
    }
    let name = name_literal(
        meta,
        format!("the name is a string: write `{usage}` with the name in quotes"),
        &format!("`{usage}`"),
    )?;
    if name.value().is_empty() {
        return Err(syn::Error::new_spanned(
            name,
            format!(
                "the {} name must not be empty; write a name, or remove the argument to use the function's name",
                kind.noun()
            ),
        ));
    }
    if kind == Kind::Orchestrator && name.value().starts_with('@') {
        // A record whose orchestrator starts with `@` is an entity's
        // (`durable_store::ENTITY_MARKER`): the listings and counts would leave the
        // orchestration out.
        return Err(syn::Error::new_spanned(
            name,
            "the orchestrator name must not start with `@`, which marks entities' records",
        ));
    }
    if args.name.is_some() {
        return Err(meta.error(format!(
            "the name of {} is given twice; keep one `name = \"...\"`",
            kind.with_article()
        )));
    }
    args.name = Some(name);
    Ok(())
}

/// Consumes the `= value` of an argument that is refused, so the arguments after it are
/// parsed and checked too.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    }
    Ok(())
}

/// The string literal of a `name = "..."` argument (`#[orchestrator]`, `#[activity]`,
/// `#[entity]`): `missing` is the error without `= value`; `usage`, what to write instead
/// of a value that is not a string literal.
pub(crate) fn name_literal(
    meta: &ParseNestedMeta<'_>,
    missing: String,
    usage: &str,
) -> syn::Result<LitStr> {
    let expr: syn::Expr = meta.value().map_err(|_| meta.error(missing))?.parse()?;
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(name),
            ..
        }) => Ok(name),
        expr => Err(syn::Error::new_spanned(
            expr,
            format!("the name is a string literal: write {usage}"),
        )),
    }
}

/// `version = N`: a positive integer, given once.
fn parse_version(args: &mut AttributeArgs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let usage = "#[orchestrator(name = \"...\", version = 2)]";
    let expr: syn::Expr = meta
        .value()
        .map_err(|_| meta.error(format!("the version is a number: write `{usage}`")))?
        .parse()?;
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Int(version),
        ..
    }) = expr
    else {
        return Err(syn::Error::new_spanned(
            expr,
            format!("the version is an integer literal: write `{usage}`"),
        ));
    };
    match version.base10_parse::<u32>() {
        Ok(n) if n >= 1 => {}
        _ => {
            return Err(syn::Error::new_spanned(
                version,
                "the version is a whole number from 1 up (1 is the version of an orchestrator without the argument)",
            ));
        }
    }
    if args.version.is_some() {
        return Err(meta.error("the version is given twice; keep one `version = N`"));
    }
    args.version = Some(version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn accepts_no_arguments() {
        assert!(parse(Kind::Activity, quote!()).unwrap().name.is_none());
    }

    #[test]
    fn accepts_a_name() {
        let args = parse(Kind::Orchestrator, quote!(name = "custom")).unwrap();
        assert_eq!(args.name.unwrap().value(), "custom");
    }

    #[test]
    fn reports_every_wrong_argument() {
        let err = parse(
            Kind::Orchestrator,
            quote!(nmae = "x", retries = 3, name = 5),
        )
        .unwrap_err();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].starts_with("unknown argument to #[orchestrator]"));
        assert!(messages[2].contains("string literal"));
    }

    #[test]
    fn rejects_an_empty_or_repeated_name() {
        let err = parse(Kind::Activity, quote!(name = "")).unwrap_err();
        assert!(err.to_string().contains("must not be empty"));
        let err = parse(Kind::Activity, quote!(name = "a", name = "b")).unwrap_err();
        assert!(err.to_string().contains("given twice"));
    }

    /// An orchestration's record holds its orchestrator's name, and a record whose name
    /// starts with `@` is an entity's: listings and counts would leave the orchestration
    /// out, and a clean would take it for an entity.
    #[test]
    fn rejects_an_orchestrator_name_that_starts_with_the_entity_marker() {
        let err = parse(Kind::Orchestrator, quote!(name = "@job")).unwrap_err();
        assert!(err.to_string().contains("must not start with `@`"), "{err}");
        // An activity's name is never an instance's: `@` is fine there.
        assert!(parse(Kind::Activity, quote!(name = "@fetch")).is_ok());
        assert!(parse(Kind::Orchestrator, quote!(name = "job@2")).is_ok());
    }
}
