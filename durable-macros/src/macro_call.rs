//! Reading the arguments of a macro invoked in a checked body, so that hazards inside
//! `format!(...)`, `vec![...]`, `assert!(...)` or `tokio::select! { ... }` are found too.
//!
//! Arguments that parse as expressions are walked like the rest of the body (and written
//! back if a call in them was rewritten); anything else is scanned as tokens for paths,
//! method calls and nested macros.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{Expr, Ident, Pat, Token};

/// The arguments of a macro, in the first form they parse as.
pub(crate) enum MacroArgs {
    /// `a, b, c`: most macros (`format!`, `vec![a, b]`, `assert!`, `write!`, ...).
    List(Punctuated<Expr, Token![,]>),
    /// `value; count`: `vec![0; n]`.
    Repeat(Box<Expr>, Token![;], Box<Expr>),
    /// `tokio::select! { ... }`.
    Select(Select),
    /// Anything else, scanned as tokens.
    Tokens(TokenStream),
}

impl MacroArgs {
    /// Parses the arguments of a macro whose last path segment is `name`.
    pub(crate) fn parse(name: &str, tokens: TokenStream) -> Self {
        if name == "select"
            && let Ok(select) = syn::parse2(tokens.clone())
        {
            return MacroArgs::Select(select);
        }
        if let Ok(list) = syn::parse::Parser::parse2(
            Punctuated::<Expr, Token![,]>::parse_terminated,
            tokens.clone(),
        ) {
            return MacroArgs::List(list);
        }
        let repeat = |input: ParseStream<'_>| -> syn::Result<MacroArgs> {
            Ok(MacroArgs::Repeat(
                input.parse()?,
                input.parse()?,
                input.parse()?,
            ))
        };
        syn::parse::Parser::parse2(repeat, tokens.clone()).unwrap_or(MacroArgs::Tokens(tokens))
    }

    /// Walks the patterns and expressions of arguments that parsed as such with `visitor`
    /// (a `select!` branch's pattern, future, precondition and handler); raw tokens are
    /// left to the caller.
    pub(crate) fn visit_mut(&mut self, visitor: &mut impl VisitMut) {
        match self {
            MacroArgs::List(list) => list.iter_mut().for_each(|e| visitor.visit_expr_mut(e)),
            MacroArgs::Repeat(value, _, count) => {
                visitor.visit_expr_mut(value);
                visitor.visit_expr_mut(count);
            }
            MacroArgs::Select(select) => {
                for branch in &mut select.branches {
                    if let Some(pat) = branch.pat_mut() {
                        visitor.visit_pat_mut(pat);
                    }
                    if let Some(future) = &mut branch.future {
                        visitor.visit_expr_mut(future);
                    }
                    if let Some((_, _, condition)) = &mut branch.precondition {
                        visitor.visit_expr_mut(condition);
                    }
                    visitor.visit_expr_mut(&mut branch.handler);
                }
            }
            MacroArgs::Tokens(_) => {}
        }
    }
}

impl ToTokens for MacroArgs {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            MacroArgs::List(list) => list.to_tokens(tokens),
            MacroArgs::Repeat(value, semi, count) => {
                value.to_tokens(tokens);
                semi.to_tokens(tokens);
                count.to_tokens(tokens);
            }
            MacroArgs::Select(select) => select.to_tokens(tokens),
            MacroArgs::Tokens(raw) => raw.to_tokens(tokens),
        }
    }
}

/// Whether a `select!`'s arguments start with `biased;`.
pub(crate) fn starts_biased(tokens: &TokenStream) -> bool {
    let mut trees = tokens.clone().into_iter();
    matches!(
        (trees.next(), trees.next()),
        (Some(TokenTree::Ident(biased)), Some(TokenTree::Punct(semi)))
            if biased == "biased" && semi.as_char() == ';'
    )
}

/// `tokio::select! { [biased;] pat = future [, if condition] => handler, ... [else => handler] }`.
pub(crate) struct Select {
    biased: Option<(Ident, Token![;])>,
    pub(crate) branches: Vec<Branch>,
}

/// One branch of a `select!`; `pat` and `future` are absent on the `else` branch.
pub(crate) struct Branch {
    head: Option<(Pat, Token![=])>,
    else_token: Option<Token![else]>,
    pub(crate) future: Option<Expr>,
    pub(crate) precondition: Option<(Token![,], Token![if], Expr)>,
    arrow: Token![=>],
    pub(crate) handler: Expr,
    comma: Option<Token![,]>,
}

impl Branch {
    pub(crate) fn pat_mut(&mut self) -> Option<&mut Pat> {
        self.head.as_mut().map(|(pat, _)| pat)
    }
}

impl Parse for Select {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let biased = if input.peek(Ident) && input.peek2(Token![;]) {
            let ident: Ident = input.parse()?;
            if ident != "biased" {
                return Err(syn::Error::new(ident.span(), "expected `biased`"));
            }
            Some((ident, input.parse()?))
        } else {
            None
        };
        let mut branches = Vec::new();
        while !input.is_empty() {
            let (head, else_token, future, precondition) = if input.peek(Token![else]) {
                (None, Some(input.parse()?), None, None)
            } else {
                let pat = Pat::parse_multi_with_leading_vert(input)?;
                let eq = input.parse()?;
                let future = input.parse()?;
                let precondition = if input.peek(Token![,]) && input.peek2(Token![if]) {
                    Some((input.parse()?, input.parse()?, input.parse()?))
                } else {
                    None
                };
                (Some((pat, eq)), None, Some(future), precondition)
            };
            let arrow = input.parse()?;
            // A block handler ends the branch; `{ .. } (a, b) = f` is not a call.
            let handler = if input.peek(syn::token::Brace) {
                Expr::Block(input.parse()?)
            } else {
                input.parse()?
            };
            let comma = input.parse()?;
            branches.push(Branch {
                head,
                else_token,
                future,
                precondition,
                arrow,
                handler,
                comma,
            });
        }
        Ok(Select { biased, branches })
    }
}

impl ToTokens for Select {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        if let Some((biased, semi)) = &self.biased {
            biased.to_tokens(tokens);
            semi.to_tokens(tokens);
        }
        for branch in &self.branches {
            if let Some((pat, eq)) = &branch.head {
                pat.to_tokens(tokens);
                eq.to_tokens(tokens);
            }
            branch.else_token.to_tokens(tokens);
            branch.future.to_tokens(tokens);
            if let Some((comma, if_token, condition)) = &branch.precondition {
                comma.to_tokens(tokens);
                if_token.to_tokens(tokens);
                condition.to_tokens(tokens);
            }
            branch.arrow.to_tokens(tokens);
            branch.handler.to_tokens(tokens);
            branch.comma.to_tokens(tokens);
        }
    }
}

/// What a token scan finds at one position.
pub(crate) enum Found {
    /// A path: its segments and its tokens; `called` if a `(...)` follows.
    Path {
        segments: Vec<String>,
        tokens: TokenStream,
        called: bool,
    },
    /// A qualified path, `<T>::f` or `<T as Trait>::f`; `called` if a `(...)` follows.
    QualifiedPath {
        path: Box<syn::ExprPath>,
        called: bool,
    },
    /// `.name(args)`.
    Method {
        name: Ident,
        args: TokenStream,
        tokens: TokenStream,
    },
    /// `path!(...)`.
    Macro(syn::Macro),
    /// A literal, maybe a format string.
    Literal(TokenTree),
}

/// Scans tokens that are not expressions, calling `found` for every path, method call,
/// nested macro and literal, at any depth. The arguments of `.side_effect(...)` are
/// skipped: they are the escape hatch.
pub(crate) fn scan(tokens: TokenStream, found: &mut dyn FnMut(Found)) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Group(group) => {
                scan(group.stream(), found);
                i += 1;
            }
            TokenTree::Literal(_) => {
                found(Found::Literal(trees[i].clone()));
                i += 1;
            }
            TokenTree::Punct(dot) if dot.as_char() == '.' => {
                let Some(TokenTree::Ident(name)) = trees.get(i + 1) else {
                    i += 1;
                    continue;
                };
                // A field or a method, never the start of a path.
                i += 2;
                if let Some(TokenTree::Group(args)) = trees.get(i)
                    && args.delimiter() == Delimiter::Parenthesis
                {
                    let tokens = trees[i - 2..=i].iter().cloned().collect();
                    if name == "side_effect" {
                        i += 1;
                    }
                    found(Found::Method {
                        name: name.clone(),
                        args: args.stream(),
                        tokens,
                    });
                }
            }
            TokenTree::Punct(open) if open.as_char() == '<' => {
                let Some((path, end)) = qualified_path_at(&trees, i) else {
                    i += 1;
                    continue;
                };
                let called = matches!(
                    trees.get(end),
                    Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Parenthesis
                );
                found(Found::QualifiedPath {
                    path: Box::new(path),
                    called,
                });
                i = end;
            }
            TokenTree::Ident(_) | TokenTree::Punct(_) => {
                let (segments, end) = path_at(&trees, i);
                if segments.is_empty() {
                    i += 1;
                    continue;
                }
                let tokens: TokenStream = trees[i..end].iter().cloned().collect();
                if let (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(group))) =
                    (trees.get(end), trees.get(end + 1))
                    && bang.as_char() == '!'
                    && let Ok(path) = syn::parse2::<syn::Path>(tokens.clone())
                {
                    found(Found::Macro(syn::Macro {
                        path,
                        bang_token: Token![!](bang.span()),
                        delimiter: delimiter(group),
                        tokens: group.stream(),
                    }));
                    i = end + 2;
                    continue;
                }
                let called = matches!(
                    trees.get(end),
                    Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Parenthesis
                );
                found(Found::Path {
                    segments,
                    tokens,
                    called,
                });
                i = end;
            }
        }
    }
}

/// The qualified path starting at the `<` at `start` (`<T>::f`, `<T as Trait>::f`), and
/// the index after it; none if the `<` starts no such path (a comparison).
fn qualified_path_at(trees: &[TokenTree], start: usize) -> Option<(syn::ExprPath, usize)> {
    let mut depth = 0_usize;
    let mut close = None;
    for (i, tree) in trees.iter().enumerate().skip(start) {
        let TokenTree::Punct(punct) = tree else {
            continue;
        };
        match punct.as_char() {
            '<' => depth += 1,
            // `->` in a fn pointer type is no closing bracket.
            '>' if !matches!(trees.get(i.wrapping_sub(1)), Some(TokenTree::Punct(p)) if p.as_char() == '-' && p.spacing() == Spacing::Joint) =>
            {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            ';' | ',' | '=' if depth == 1 => return None,
            _ => {}
        }
    }
    let close = close?;
    let (rest, end) = path_at(trees, close + 1);
    if rest.is_empty() {
        return None;
    }
    let tokens: TokenStream = trees[start..end].iter().cloned().collect();
    let path = syn::parse2::<syn::ExprPath>(tokens).ok()?;
    path.qself.is_some().then_some((path, end))
}

/// The path starting at `start` (`a::b::c`, `::a::b`), and the index after it.
fn path_at(trees: &[TokenTree], start: usize) -> (Vec<String>, usize) {
    let is_colons = |i: usize| {
        matches!(
            (trees.get(i), trees.get(i + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
        )
    };
    let mut i = start;
    if is_colons(i) {
        i += 2;
    }
    let mut segments = Vec::new();
    while let Some(TokenTree::Ident(ident)) = trees.get(i) {
        segments.push(ident.to_string());
        i += 1;
        if is_colons(i) && matches!(trees.get(i + 2), Some(TokenTree::Ident(_))) {
            i += 2;
        } else {
            break;
        }
    }
    (segments, i)
}

fn delimiter(group: &proc_macro2::Group) -> syn::MacroDelimiter {
    let span = group.delim_span();
    match group.delimiter() {
        Delimiter::Brace => syn::MacroDelimiter::Brace(syn::token::Brace { span }),
        Delimiter::Bracket => syn::MacroDelimiter::Bracket(syn::token::Bracket { span }),
        _ => syn::MacroDelimiter::Paren(syn::token::Paren { span }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn parses_each_form() {
        assert!(matches!(
            MacroArgs::parse("format", quote!("{}", x.y())),
            MacroArgs::List(_)
        ));
        assert!(matches!(
            MacroArgs::parse("vec", quote!(0; n)),
            MacroArgs::Repeat(..)
        ));
        assert!(matches!(
            MacroArgs::parse(
                "select",
                quote!(biased; v = a => v, _ = b => { 1 } else => 2)
            ),
            MacroArgs::Select(_)
        ));
        assert!(matches!(
            MacroArgs::parse("info", quote!(name = %x, "done")),
            MacroArgs::Tokens(_)
        ));
    }

    #[test]
    fn writes_a_select_back_as_it_was() {
        let tokens = quote!(biased; Some(v) = a, if ready => v, _ = b => { 1 } else => 2,);
        let MacroArgs::Select(select) = MacroArgs::parse("select", tokens.clone()) else {
            panic!("not a select");
        };
        assert_eq!(select.branches.len(), 3);
        assert_eq!(select.to_token_stream().to_string(), tokens.to_string());
        assert!(starts_biased(&tokens));
        assert!(!starts_biased(&quote!(v = a => v)));
    }

    #[test]
    fn scans_paths_methods_and_macros() {
        let mut seen = Vec::new();
        scan(
            quote!(a = %std::time::SystemTime::now(), x.elapsed(), ctx.side_effect(|| f()), inner!(y),
                b = %<Instant as Reading>::now(), c = %(d < e)),
            &mut |found| {
                seen.push(match found {
                    Found::Path {
                        segments, called, ..
                    } => format!("path {} {called}", segments.join("::")),
                    Found::QualifiedPath { path, called } => {
                        format!("qualified {} {called}", path.to_token_stream())
                    }
                    Found::Method { name, .. } => format!("method {name}"),
                    Found::Macro(mac) => format!("macro {}", mac.path.get_ident().unwrap()),
                    Found::Literal(_) => "literal".into(),
                })
            },
        );
        assert_eq!(
            seen,
            [
                "path a false",
                "path std::time::SystemTime::now true",
                "path x false",
                "method elapsed",
                "path ctx false",
                "method side_effect",
                "macro inner",
                "path b false",
                "qualified < Instant as Reading > :: now true",
                "path c false",
                "path d false",
                "path e false",
            ]
        );
    }
}
