// The function's attributes are kept: docs on the handle (`missing_docs` is denied),
// lint levels on the body (`unused_variables` is denied), `#[cfg]` on every generated
// item (otherwise the two `versioned` handles would clash in either profile).
#![deny(warnings, missing_docs)]
//! Fixture.

use durable_core::{OrchestrationContext, orchestrator};

/// Approves an expense.
///
/// The handle carries these docs.
#[orchestrator]
#[allow(unused_variables)]
pub async fn approve(ctx: OrchestrationContext, amount: u32) -> Result<bool, String> {
    let unused = amount;
    Ok(true)
}

/// One version in debug builds.
#[orchestrator]
#[cfg(debug_assertions)]
pub async fn versioned(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(())
}

/// Another in release builds.
#[orchestrator]
#[cfg(not(debug_assertions))]
pub async fn versioned(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(())
}

/// An old version kept for instances in flight: deprecated where it is named, silent
/// where it is defined.
#[orchestrator(name = "approve/v1")]
#[deprecated = "start `approve` instead"]
pub async fn approve_v1(_ctx: OrchestrationContext, _amount: u32) -> Result<bool, String> {
    Ok(false)
}

fn main() {
    let _ = (approve, versioned);
}
