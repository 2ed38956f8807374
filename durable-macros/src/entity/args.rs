//! `#[entity]`'s arguments: `#[entity]`, `#[entity(name = "Account")]`,
//! `#[entity(init = Account::opened)]`.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::{LitStr, Path};

use crate::attribute_args::{name_literal, skip_value};
use crate::errors::Errors;

/// The parsed arguments.
#[derive(Debug, Default)]
pub(crate) struct EntityArgs {
    /// `name = "..."`: the name registered and carried by ids instead of the type's.
    pub(crate) name: Option<LitStr>,
    /// `init = path`: a `fn() -> S` making the initial state, instead of `S::default()`.
    pub(crate) init: Option<Path>,
}

const USAGE: &str = "`#[entity(name = \"...\", init = path::to::fn)]`";

/// Parses the arguments, reporting every argument that is wrong.
pub(crate) fn parse(tokens: TokenStream) -> syn::Result<EntityArgs> {
    let mut args = EntityArgs::default();
    let mut errors = Errors::new();
    let parser = syn::meta::parser(|meta| {
        errors.take(parse_one(&mut args, &meta));
        Ok(())
    });
    let parsed = syn::parse::Parser::parse2(parser, tokens);
    errors.take(parsed);
    errors.check()?;
    Ok(args)
}

fn parse_one(args: &mut EntityArgs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.path.is_ident("init") {
        let expr: syn::Expr = meta
            .value()
            .map_err(|_| meta.error(format!("`init` names a function: write {USAGE}")))?
            .parse()?;
        let syn::Expr::Path(syn::ExprPath {
            qself: None, path, ..
        }) = expr
        else {
            return Err(syn::Error::new_spanned(
                expr,
                format!(
                    "`init` names a `fn() -> State` by its path, without calling it: write {USAGE}"
                ),
            ));
        };
        if args.init.replace(path).is_some() {
            return Err(meta.error("`init` is given twice; keep one"));
        }
        return Ok(());
    }
    if !meta.path.is_ident("name") {
        skip_value(meta)?;
        return Err(meta.error(format!(
            "unknown argument to #[entity]; the arguments are the name and the initial state: {USAGE}"
        )));
    }
    let name = name_literal(meta, format!("the name is a string: write {USAGE}"), USAGE)?;
    let value = name.value();
    if value.is_empty() || value.contains('@') {
        return Err(syn::Error::new_spanned(
            name,
            "an entity name is not empty and holds no `@` (it ends the name in an entity id `@name@key`)",
        ));
    }
    if args.name.replace(name).is_some() {
        return Err(meta.error("the name is given twice; keep one `name = \"...\"`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn accepts_a_name_and_an_init_function() {
        let args = parse(quote!(name = "Account", init = accounts::opened)).unwrap();
        assert_eq!(args.name.unwrap().value(), "Account");
        let init = args.init.unwrap();
        assert_eq!(quote!(#init).to_string(), "accounts :: opened");
        assert!(parse(quote!()).unwrap().name.is_none());
    }

    #[test]
    fn reports_every_wrong_argument() {
        let err = parse(quote!(nmae = "x", name = "a@b", init = 5, name = 3)).unwrap_err();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].starts_with("unknown argument to #[entity]"));
        assert!(messages[1].contains("holds no `@`"));
        assert!(messages[2].contains("by its path"));
        assert!(messages[3].contains("string literal"));
    }
}
