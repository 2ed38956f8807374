//! The `#[orchestrator]` and `#[activity]` attribute macros of `durable`.
//!
//! Use them through `durable_core`, which re-exports them next to the traits and context
//! types the generated code names.

use proc_macro::TokenStream;

mod args;
mod ast;
mod expand;
mod valid;

use ast::Kind;

/// Turns `async fn name(ctx: OrchestrationContext, input: T) -> Result<U, E>` into an
/// orchestrator: a replayable workflow.
///
/// The function becomes a typed handle, a unit struct called `name` implementing
/// `durable_core::Orchestrator`, which the runtime registers and the client starts. The
/// original body stays callable as `name::run(ctx, input)`.
///
/// The input, output and error are recorded in history, so they must implement serde's
/// `Serialize` and `DeserializeOwned`, and the error `Display`.
///
/// # Arguments
///
/// - `name = "..."`: the name the orchestrator is registered and recorded under, instead
///   of the function's name. Keep it stable across renames of the function: instances in
///   flight are found by it.
///
/// # Examples
///
/// ```ignore
/// use durable_core::{OrchestrationContext, orchestrator};
///
/// #[orchestrator]
/// async fn greet(ctx: OrchestrationContext, name: String) -> Result<String, String> {
///     let greeting = ctx.call(make_greeting, name).await?;
///     Ok(greeting)
/// }
/// ```
#[proc_macro_attribute]
pub fn orchestrator(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    expand::handle(Kind::Orchestrator, args.into(), item.clone())
        .unwrap_or_else(|error| expand::with_errors(item, &error))
        .into()
}

/// Turns `async fn name(ctx: ActivityContext, input: T) -> Result<U, E>` into an
/// activity: a unit of work with side effects, run at least once, its result recorded.
///
/// The function becomes a typed handle, a unit struct called `name` implementing
/// `durable_core::Activity`, which an orchestrator passes to `ctx.call(name, input)`: a
/// wrong input type is a type error. The original body stays callable as
/// `name::run(ctx, input)`.
///
/// The input, output and error are recorded in history, so they must implement serde's
/// `Serialize` and `DeserializeOwned`, and the error `Display`.
///
/// # Arguments
///
/// - `name = "..."`: the name the activity is registered and recorded under, instead of
///   the function's name.
///
/// # Examples
///
/// ```ignore
/// use durable_core::{ActivityContext, activity};
///
/// #[activity]
/// async fn make_greeting(_ctx: ActivityContext, name: String) -> Result<String, String> {
///     Ok(format!("Hello, {name}!"))
/// }
/// ```
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    expand::handle(Kind::Activity, args.into(), item.clone())
        .unwrap_or_else(|error| expand::with_errors(item, &error))
        .into()
}
