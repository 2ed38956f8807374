//! The `#[orchestrator]`, `#[activity]`, `#[deterministic]` and `#[entity]` attribute
//! macros of `durable`.
//!
//! Use them through `durable_core`, which re-exports them next to the traits and context
//! types the generated code names, and documents them there with compiled examples.

#![warn(missing_docs)]

use proc_macro::TokenStream;

mod ast;
mod attribute_args;
mod body_check;
mod callees;
mod context;
mod continue_as_new;
mod deterministic_attribute;
mod entity;
mod errors;
mod expand;
mod hazards;
mod helper_calls;
mod lock_scope;
mod macro_call;
mod marker;
mod scope;
mod site;
mod symbol;
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
/// # Determinism checks
///
/// The body is replayed after every restart, so it must take the same path every time.
/// The macro rejects, anywhere in the body (closures, async blocks, macro arguments, and
/// through `use ... as` aliases declared in the body), every hazard it can see, each with
/// the replay-safe replacement:
///
/// | hazard | write instead |
/// |---|---|
/// | `SystemTime::now()`, `Instant::now()`, `Utc::now()`, `.elapsed()` | `ctx.now()` |
/// | `rand::random()`, `thread_rng()`, `OsRng`, `fastrand` | `ctx.random()` |
/// | `Uuid::new_v4()`, `new_v7()`, `now_v7()` | `ctx.new_uuid()` |
/// | `thread::sleep`, `tokio::time::{sleep, interval, timeout}` | `ctx.sleep(d)`, `ctx.sleep_until(t)`, `ctx.timeout(d, f)` |
/// | `tokio::spawn`, `spawn_blocking`, `thread::spawn`, rayon | an activity, `ctx.join_all(...)`, a sub-orchestration |
/// | `mpsc`, `oneshot`, `watch`, `broadcast`, `Notify` | `ctx.wait_event::<T>(name)` |
/// | `tokio::select!` without `biased;`, `futures::select!` | `tokio::select! { biased; ... }`, `ctx.when_any(...)` |
/// | `HashMap`, `HashSet` | `BTreeMap`, `BTreeSet` |
/// | `std::env::var`, `args`, `current_dir`, `process::id` | the input, or an activity |
/// | `std::fs`, `tokio::fs`, `std::net`, `tokio::net`, `reqwest`, `sqlx`, ... | an activity |
/// | `println!`, `eprintln!`, `print!`, `eprint!`, `dbg!` | `tracing`, or log in an activity |
/// | `static mut`, `thread_local!`, atomics | state passed through the input and results |
/// | `.as_ptr()`, `.addr()`, `{:p}`, casts to raw pointers | stable ids |
/// | a `loop` that awaits and has no `break`, `return` or `continue_as_new` | `return ctx.continue_as_new(input).await;` |
///
/// A function called with the context (`helper(&ctx)`, `worker.step(&ctx)`) must be
/// marked [`#[deterministic]`](macro@deterministic), which runs the same checks on it.
/// The escape hatch is `ctx.side_effect(|| ...)`: its closure is not checked, and its
/// value is recorded in history so replays see the same one.
///
/// # Critical sections
///
/// While the guard of `let section = ctx.lock(..).await?` is in scope in a block (until
/// `section.release()` or `drop(section)` there), a further `ctx.lock(..)` or
/// `ctx.sub_orchestration(..)` in that block, closures and async blocks included, is a
/// compile error on the call: both are refused inside a section (Durable Functions'
/// locking rules). What the macro cannot see (a section handed to a helper) is refused
/// at run time with a `LockRuleViolation`.
///
/// # Continuing as new
///
/// The next generation takes this orchestrator's input, so the macro gives
/// `ctx.continue_as_new(next)` in the body that type: `continue_as_new(1)` in an
/// orchestrator taking `u32` sends a `u32`, and a value of another type is a compile error
/// on it. `ctx.continue_as_new_latest(next)` is left generic (the newest version may take
/// another type), and so is a call that names the type: `ctx.continue_as_new::<T, _>(next)`.
///
/// # Arguments
///
/// - `name = "..."`: the name the orchestrator is registered and recorded under, instead
///   of the function's name. Keep it stable across renames of the function: instances in
///   flight are found by it. It must not start with `@`, which marks entities' records.
/// - `version = N`: the version of the orchestrator's code registered under that name, a
///   whole number from 1 (the version without the argument). An instance keeps the
///   version it started with: register the old version beside the new one while
///   instances of it are in flight.
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
///   the function's name. Keep it stable across renames of the function: the histories of
///   instances in flight record it.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    expand::handle(Kind::Activity, args.into(), item.clone())
        .unwrap_or_else(|error| expand::with_errors(item, &error))
        .into()
}

/// Marks a helper that takes the orchestration context as replay-safe, and checks its
/// body like an orchestrator's (see [`#[orchestrator]`](macro@orchestrator) for the
/// rules).
///
/// An orchestrator or a deterministic helper may only pass the context (`ctx`, `&ctx`,
/// `ctx.clone()`) to functions marked `#[deterministic]`; calling an unmarked one is a
/// compile error at the call. Helpers that do not receive the context need no mark.
///
/// Put it on a free function, on a method that takes `self`, or on an `impl` block (which
/// marks every function in it, and is the form for associated functions without `self`
/// and for trait impls). It generates a hidden marker next to the function: a type of the
/// same name for a free function (so the name cannot also be a type or module in the same
/// scope), a forwarding method `name__needs_deterministic_attribute` for a method.
///
/// It takes no arguments.
#[proc_macro_attribute]
pub fn deterministic(args: TokenStream, item: TokenStream) -> TokenStream {
    deterministic_attribute::expand(args.into(), item.into()).into()
}

/// Turns an inherent `impl` block of a serde state type into a durable entity: each
/// `pub fn` taking `&mut self` is an operation that may change the state, each one
/// taking `&self` a read; other functions stay ordinary helpers.
///
/// An operation is `pub fn name(&mut self, ctx: &mut EntityContext, input: T) -> R`: the
/// context (`&EntityContext` on a read, which sends nothing) and the input are optional,
/// and `R` is nothing, a value, or `Result<U, E>`. It is synchronous: it runs to
/// completion inside one turn of its entity, and its state change and signals are
/// committed together. Each operation becomes a typed handle, an associated const of the
/// same name (`Account::deposit: Operation<Account, i64, ()>`), and its function moves
/// to a hidden method; share logic between operations through private helpers.
///
/// The block also gets `impl durable_core::Entity`: the name, the initial state
/// (`Default::default()`), the list of operations and their dispatch.
///
/// # Arguments
///
/// - `name = "..."`: the name the entity is registered under and its ids carry, instead
///   of the type's. Not empty, no `@`.
/// - `init = path`: a `fn() -> State` making the initial state, instead of
///   `State::default()`.
///
/// # Where the rules come from
///
/// - Public methods are the operations, the state is initialized when absent: DTFx's
///   `TaskEntity<TState>` (`InitializeState()`); names match exactly here (DTFx ignores
///   case), as they are Rust identifiers.
/// - `&self` reads run without changing the state: Restate's shared handlers.
/// - Synchronous operations: Durable Functions runs "all operations on a single entity
///   serially", each to completion, and commits its state with its signals.
/// - An operation that fails changes nothing, its signals included: Durable Functions'
///   `RollbackEntityOperationsOnExceptions`, always on.
/// - Signals are one-way and may be scheduled: Durable Functions' signals and DTFx's
///   `SignalEntityOptions.SignalTime`.
#[proc_macro_attribute]
pub fn entity(args: TokenStream, item: TokenStream) -> TokenStream {
    entity::expand(args.into(), item.into()).into()
}
