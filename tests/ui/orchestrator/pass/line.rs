// `Orchestrator::LINE` is the line of the `fn` name, wherever the attribute and the
// signature are placed.
#![deny(warnings)]

use durable_core::{OrchestrationContext, Orchestrator, orchestrator};

const SAME_LINE: u32 = line!() + 2;
#[orchestrator]
pub async fn same_line(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(())
}

const SPLIT: u32 = line!() + 7;
/// Docs between.
#[orchestrator]
#[rustfmt::skip]
pub
async
fn
split(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(())
}

fn main() {
    assert_eq!(same_line::LINE, SAME_LINE);
    assert_eq!(<split as Orchestrator>::LINE, SPLIT);
}
