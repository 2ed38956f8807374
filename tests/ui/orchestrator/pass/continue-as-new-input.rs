// `ctx.continue_as_new(input)` takes the orchestrator's own input type, which the macro
// names for it: the literal in `continue_as_new(1)` is a `u32`, not an `i32` of which the
// next generation, taking a `u32`, could not read a negative value. `main`
// runs the generations through the replay step and checks the bytes.
#![deny(warnings)]

use durable_core::record::Event;
use durable_core::replay_test::{Execution, Outcome};
use durable_core::{ContinueAsNew, OrchestrationContext, Orchestrator, orchestrator};

#[orchestrator]
pub async fn outlives(ctx: OrchestrationContext, generation: u32) -> Result<u32, String> {
    if generation == 0 {
        return ctx.continue_as_new(1).await;
    }
    Ok(generation)
}

/// Typed under any name for the context, and inside closures and async blocks.
#[orchestrator]
pub async fn restarts(context: OrchestrationContext, n: u64) -> Result<u64, String> {
    let restart = || context.continue_as_new(5);
    match n {
        0 => restart().await,
        5 => async { context.continue_as_new(6).await }.await,
        n => Ok(n),
    }
}

/// Left as written: a turbofish, `continue_as_new_latest` (the newest version may take
/// another type), and a nested function's own `ctx`.
#[orchestrator]
pub async fn opts_out(ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
    #[allow(dead_code)]
    fn nested(ctx: &OrchestrationContext) -> ContinueAsNew<()> {
        ctx.continue_as_new("another orchestrator's input")
    }
    match n {
        0 => ctx.continue_as_new::<u64, _>(1).await,
        1 => ctx.continue_as_new_latest(String::from("v2 takes a string")).await,
        n => Ok(n),
    }
}

/// One turn of `orchestrator` started with `input`, encoded.
fn run<O: Orchestrator>(orchestrator: O, input: Vec<u8>) -> Outcome {
    let started = Event::Started {
        orchestrator: O::NAME.to_string(),
        input,
    };
    Execution::of(orchestrator, "i").turn(&[], vec![started]).outcome
}

/// The input the next generation gets.
fn next_input(outcome: Outcome) -> Vec<u8> {
    match outcome {
        Outcome::ContinuedAsNew { input, .. } => input,
        other => panic!("expected to continue as new, got {other:?}"),
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn main() {
    let next = next_input(run(outlives, encode(&0_u32)));
    assert_eq!(next, encode(&1_u32), "an i32 1 would be [2]");
    assert_eq!(run(outlives, next), Outcome::Completed(encode(&1_u32)));

    let next = next_input(run(restarts, encode(&0_u64)));
    assert_eq!(next, encode(&5_u64));
    let next = next_input(run(restarts, next));
    assert_eq!(next, encode(&6_u64));
    assert_eq!(run(restarts, next), Outcome::Completed(encode(&6_u64)));

    let next = next_input(run(opts_out, encode(&1_u32)));
    assert_eq!(next, encode(&"v2 takes a string"));
}
