//! `#[entity]`: one pipeline, one file per stage, as for `#[orchestrator]`: parse the
//! impl block into a model ([`ast`]) and the arguments ([`args`]), check every rule
//! ([`valid`]), then generate the handles and the `Entity` impl ([`expand`]).

mod args;
mod ast;
mod expand;
mod valid;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

/// Expands `#[entity]`; on errors, the errors beside the impl block as written (tokio's
/// and thiserror's approach), so the rest of the crate reports nothing unrelated.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(args, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => {
            let errors = error.to_compile_error();
            quote!(#errors #item)
        }
    }
}

fn try_expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item = ast::parse_item(item)?;
    let entity = ast::EntityImpl::new(&item);
    let mut errors = Errors::new();
    let args = errors.take(args::parse(args));
    let operations = errors.take(valid::check(&entity));
    let (args, operations) = errors.finish(args.zip(operations))?;
    Ok(expand::generate(&entity, &args, &operations))
}
