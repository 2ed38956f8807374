//! The attribute's arguments: `#[orchestrator]`, `#[orchestrator(name = "custom")]`,
//! `#[orchestrator(name = "order", version = 2)]`, and flow control: an activity's
//! `#[activity(concurrency = 3, rate = "10/1s", priority = 5)]`, an orchestrator's
//! `#[orchestrator(max_running = 10)]`.

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
    /// `concurrency = N` (activities only): the most tasks that run at once.
    pub(crate) concurrency: Option<u32>,
    /// `rate = "N/period"` (activities only): the most starts per period, in ms.
    pub(crate) rate: Option<(u32, u64)>,
    /// `priority = N` (activities only): waiting tasks of higher priority go first.
    pub(crate) priority: Option<i32>,
    /// `max_running = N` (orchestrators only): the most instances that run at once.
    pub(crate) max_running: Option<u32>,
}

/// The flow-control arguments an activity takes.
const FLOW_ARGS: [&str; 3] = ["concurrency", "rate", "priority"];

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
    if kind == Kind::Activity && FLOW_ARGS.iter().any(|arg| meta.path.is_ident(arg)) {
        return parse_flow(args, meta);
    }
    if kind == Kind::Orchestrator && meta.path.is_ident("max_running") {
        return parse_max_running(args, meta);
    }
    if !meta.path.is_ident("name") {
        skip_value(meta)?;
        let known = match kind {
            Kind::Orchestrator => "the arguments are the registered name, version and \
                 limit on running instances: \
                 `#[orchestrator(name = \"...\", version = 2, max_running = 10)]`"
                .to_string(),
            Kind::Activity => "the arguments are the registered name and flow control: \
                 `#[activity(name = \"...\", concurrency = 3, rate = \"10/1s\", priority = 1)]`"
                .to_string(),
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

/// `concurrency = N`, `rate = "N/period"` or `priority = N`, each given once.
fn parse_flow(args: &mut AttributeArgs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let arg = FLOW_ARGS
        .into_iter()
        .find(|arg| meta.path.is_ident(arg))
        .expect("a flow-control argument");
    let usage = match arg {
        "concurrency" => "#[activity(concurrency = 3)]",
        "rate" => "#[activity(rate = \"10/1s\")]",
        _ => "#[activity(priority = 5)]",
    };
    let expr: syn::Expr = meta
        .value()
        .map_err(|_| meta.error(format!("`{arg}` takes a value: write `{usage}`")))?
        .parse()?;
    let given_twice = || {
        syn::Error::new_spanned(
            &expr,
            format!("`{arg}` is given twice; keep one `{arg} = ...`"),
        )
    };
    match arg {
        "concurrency" => {
            let n = int_literal(&expr, usage)?
                .filter(|n| (1..=i64::from(u32::MAX)).contains(n))
                .ok_or_else(|| {
                    syn::Error::new_spanned(
                        &expr,
                        format!("the concurrency is a whole number from 1 up: write `{usage}`"),
                    )
                })?;
            if args.concurrency.is_some() {
                return Err(given_twice());
            }
            args.concurrency = Some(n as u32);
        }
        "rate" => {
            let rate = match &expr {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(rate),
                    ..
                }) => parse_rate(&rate.value()).map_err(|why| {
                    syn::Error::new_spanned(rate, format!("{why}: write `{usage}` (N starts per period; the period in ms, s, m or h)"))
                })?,
                _ => {
                    return Err(syn::Error::new_spanned(
                        &expr,
                        format!("the rate is a string literal: write `{usage}`"),
                    ));
                }
            };
            if args.rate.is_some() {
                return Err(given_twice());
            }
            args.rate = Some(rate);
        }
        _ => {
            let n = int_literal(&expr, usage)?
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| {
                    syn::Error::new_spanned(
                        &expr,
                        format!(
                            "the priority is a whole number (an i32, higher first): write `{usage}`"
                        ),
                    )
                })?;
            if args.priority.is_some() {
                return Err(given_twice());
            }
            args.priority = Some(n);
        }
    }
    Ok(())
}

/// `max_running = N`: a whole number from 1 up, given once.
fn parse_max_running(args: &mut AttributeArgs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let usage = "#[orchestrator(max_running = 10)]";
    let expr: syn::Expr = meta
        .value()
        .map_err(|_| meta.error(format!("`max_running` takes a value: write `{usage}`")))?
        .parse()?;
    let n = int_literal(&expr, usage)?
        .filter(|n| (1..=i64::from(u32::MAX)).contains(n))
        .ok_or_else(|| {
            syn::Error::new_spanned(
                &expr,
                format!("`max_running` is a whole number from 1 up: write `{usage}`"),
            )
        })?;
    if args.max_running.is_some() {
        return Err(syn::Error::new_spanned(
            &expr,
            "`max_running` is given twice; keep one `max_running = ...`",
        ));
    }
    args.max_running = Some(n as u32);
    Ok(())
}

/// The value of an integer literal, negated or not: `Ok(None)` if it does not fit an i64.
fn int_literal(expr: &syn::Expr, usage: &str) -> syn::Result<Option<i64>> {
    let (negative, lit) = match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(n),
            ..
        }) => (false, n),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(n),
                ..
            }) => (true, n),
            _ => return Err(not_an_integer(expr, usage)),
        },
        _ => return Err(not_an_integer(expr, usage)),
    };
    Ok(lit
        .base10_parse::<i64>()
        .ok()
        .map(|n| if negative { -n } else { n }))
}

fn not_an_integer(expr: &syn::Expr, usage: &str) -> syn::Error {
    syn::Error::new_spanned(
        expr,
        format!("the value is an integer literal: write `{usage}`"),
    )
}

/// `"N/period"`: N starts (from 1) per period (`500ms`, `1s`, `s`, `2m`, `1h`; more than
/// 0), as (N, period in ms); or why not.
fn parse_rate(rate: &str) -> Result<(u32, u64), String> {
    let (starts, period) = rate
        .split_once('/')
        .ok_or_else(|| format!("the rate `{rate}` has no `/`"))?;
    let starts: u32 = match starts.trim().parse() {
        Ok(n) if n >= 1 => n,
        _ => {
            return Err(format!(
                "the rate `{rate}` does not start with a number of starts from 1 up"
            ));
        }
    };
    let period = period.trim();
    let digits = period
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(period.len());
    let (count, unit) = period.split_at(digits);
    let count: u64 = if count.is_empty() {
        1
    } else {
        count
            .parse()
            .map_err(|_| format!("the period of the rate `{rate}` is too long"))?
    };
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "the period of the rate `{rate}` has no unit of ms, s, m or h"
            ));
        }
    };
    match count.checked_mul(unit_ms) {
        Some(ms) if ms > 0 => Ok((starts, ms)),
        Some(_) => Err(format!("the period of the rate `{rate}` is 0")),
        None => Err(format!("the period of the rate `{rate}` is too long")),
    }
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

    #[test]
    fn accepts_flow_control_on_an_activity() {
        let args = parse(
            Kind::Activity,
            quote!(
                name = "charge",
                concurrency = 3,
                rate = "10/1s",
                priority = -2
            ),
        )
        .unwrap();
        assert_eq!(args.concurrency, Some(3));
        assert_eq!(args.rate, Some((10, 1_000)));
        assert_eq!(args.priority, Some(-2));
        let args = parse(Kind::Activity, quote!(rate = "5/500ms")).unwrap();
        assert_eq!(args.rate, Some((5, 500)));
        let args = parse(Kind::Activity, quote!(rate = "100/m")).unwrap();
        assert_eq!(args.rate, Some((100, 60_000)));
        let args = parse(Kind::Activity, quote!(rate = "1/2h")).unwrap();
        assert_eq!(args.rate, Some((1, 7_200_000)));
    }

    /// Each bad value is reported on its own, with what to write instead.
    #[test]
    fn rejects_bad_flow_control_values() {
        let cases = [
            (quote!(concurrency = 0), "from 1 up"),
            (quote!(concurrency = -1), "from 1 up"),
            (quote!(concurrency = 5000000000), "from 1 up"),
            (quote!(concurrency = "3"), "integer literal"),
            (quote!(concurrency), "takes a value"),
            (quote!(rate = 10), "string literal"),
            (quote!(rate = "10"), "has no `/`"),
            (quote!(rate = "0/1s"), "from 1 up"),
            (quote!(rate = "x/1s"), "from 1 up"),
            (quote!(rate = "10/0s"), "is 0"),
            (quote!(rate = "10/1d"), "no unit"),
            (quote!(rate = "10/1"), "no unit"),
            (quote!(rate = "10/99999999999999999999s"), "too long"),
            (quote!(priority = 1.5), "integer literal"),
            (quote!(priority = 3000000000), "an i32"),
            (quote!(concurrency = 2, concurrency = 3), "given twice"),
            (quote!(priority = 1, priority = 2), "given twice"),
        ];
        for (tokens, expected) in cases {
            let shown = tokens.to_string();
            let err = parse(Kind::Activity, tokens).unwrap_err().to_string();
            assert!(err.contains(expected), "`{shown}`: {err}");
        }
    }

    /// An activity's flow control is refused on an orchestrator as unknown, and an
    /// orchestrator's on an activity.
    #[test]
    fn rejects_flow_control_of_the_other_kind() {
        let err = parse(Kind::Orchestrator, quote!(concurrency = 3)).unwrap_err();
        assert!(err.to_string().starts_with("unknown argument"), "{err}");
        let err = parse(Kind::Activity, quote!(max_running = 3)).unwrap_err();
        assert!(err.to_string().starts_with("unknown argument"), "{err}");
    }

    #[test]
    fn accepts_max_running_on_an_orchestrator() {
        let args = parse(Kind::Orchestrator, quote!(version = 2, max_running = 10)).unwrap();
        assert_eq!(args.max_running, Some(10));
    }

    #[test]
    fn rejects_bad_max_running_values() {
        let cases = [
            (quote!(max_running = 0), "from 1 up"),
            (quote!(max_running = -2), "from 1 up"),
            (quote!(max_running = "3"), "integer literal"),
            (quote!(max_running), "takes a value"),
            (quote!(max_running = 1, max_running = 2), "given twice"),
        ];
        for (tokens, expected) in cases {
            let shown = tokens.to_string();
            let err = parse(Kind::Orchestrator, tokens).unwrap_err().to_string();
            assert!(err.contains(expected), "`{shown}`: {err}");
        }
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
