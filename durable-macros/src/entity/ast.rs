//! The model of an `#[entity]` impl block: the state type, and each function sorted into
//! an operation (a `pub fn` with a receiver) or a helper, each a reference to the user's
//! own tokens so errors and generated items keep the user's spans.

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::{
    FnArg, Ident, ImplItem, ImplItemFn, Item, ItemImpl, PatType, Receiver, Type, Visibility,
};

/// The form `#[entity]` applies to, as shown in its errors.
pub(crate) const FORM: &str =
    "`#[entity] impl State { pub fn operation(&mut self, input: T) -> U { .. } }`";

/// Parses the annotated item, which must be an inherent `impl` block.
pub(crate) fn parse_item(item: TokenStream) -> syn::Result<ItemImpl> {
    let error = |tokens: &dyn quote::ToTokens, what: &str| {
        syn::Error::new_spanned(
            tokens,
            format!(
                "#[entity] applies to an inherent `impl` block of the state type, not to {what}: {FORM}"
            ),
        )
    };
    match syn::parse2::<Item>(item)? {
        Item::Impl(item) => match &item.trait_ {
            None => Ok(item),
            Some((_, path, _)) => Err(error(path, "a trait impl")),
        },
        Item::Struct(item) => Err(error(
            &item.ident,
            "a struct; put it on the struct's `impl` block",
        )),
        Item::Enum(item) => Err(error(
            &item.ident,
            "an enum; put it on the enum's `impl` block",
        )),
        Item::Fn(item) => Err(error(&item.sig.ident, "a function")),
        other => Err(error(&other, "this item")),
    }
}

/// The impl block as the user wrote it.
#[derive(Debug)]
pub(crate) struct EntityImpl<'a> {
    pub(crate) item: &'a ItemImpl,
    pub(crate) self_ty: &'a Type,
    /// The `pub fn`s with a receiver, in order: the operations, checked or not.
    pub(crate) operations: Vec<&'a ImplItemFn>,
}

impl<'a> EntityImpl<'a> {
    pub(crate) fn new(item: &'a ItemImpl) -> Self {
        let operations = item
            .items
            .iter()
            .filter_map(|item| match item {
                ImplItem::Fn(function) if is_operation(function) => Some(function),
                _ => None,
            })
            .collect();
        EntityImpl {
            item,
            self_ty: &item.self_ty,
            operations,
        }
    }
}

/// The rule that sorts functions: a `pub fn` with a receiver is an operation (`self` by
/// value included, which the checks then refuse); other functions (private, `pub(crate)`,
/// or without `self`, such as a constructor) are ordinary helpers, left as written.
pub(crate) fn is_operation(function: &ImplItemFn) -> bool {
    matches!(function.vis, Visibility::Public(_)) && function.sig.receiver().is_some()
}

/// Whether an operation reads (`&self`) or may change the state (`&mut self`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// What an operation returns.
#[derive(Debug)]
pub(crate) enum Returns<'a> {
    /// Nothing: `()`.
    Unit,
    /// `T`, which cannot fail.
    Value(&'a Type),
    /// `Result<T, E>`.
    Result { ok: &'a Type, err: &'a Type },
}

/// An operation that follows every rule: what the generated code needs.
#[derive(Debug)]
pub(crate) struct Operation<'a> {
    pub(crate) function: &'a ImplItemFn,
    pub(crate) access: Access,
    /// The `&EntityContext` or `&mut EntityContext` parameter, if it takes one.
    pub(crate) context: Option<&'a PatType>,
    /// The input parameter, if it takes one.
    pub(crate) input: Option<&'a PatType>,
    pub(crate) returns: Returns<'a>,
}

impl Operation<'_> {
    pub(crate) fn ident(&self) -> &Ident {
        &self.function.sig.ident
    }

    /// The name messages carry: the method's, without `r#`.
    pub(crate) fn name(&self) -> String {
        self.ident().unraw().to_string()
    }
}

/// The receiver and the typed parameters of a function.
pub(crate) fn params(function: &ImplItemFn) -> (Option<&Receiver>, Vec<&PatType>) {
    let mut receiver = None;
    let mut params = Vec::new();
    for arg in &function.sig.inputs {
        match arg {
            FnArg::Receiver(r) => receiver = Some(r),
            FnArg::Typed(param) => params.push(param),
        }
    }
    (receiver, params)
}
