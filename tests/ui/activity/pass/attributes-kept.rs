// The function's attributes are kept: docs on the handle (`missing_docs` is denied),
// lint levels on the body (`unused_variables` is denied), `#[cfg]` on every generated
// item (otherwise the two `versioned` handles would clash in either profile).
#![deny(warnings, missing_docs)]
//! Fixture.

use durable_core::{ActivityContext, activity};

/// Sends an email.
///
/// The handle carries these docs.
#[activity]
#[allow(unused_variables)]
pub async fn send_email(ctx: ActivityContext, to: String) -> Result<(), String> {
    let unused = to;
    Ok(())
}

/// One version in debug builds.
#[activity]
#[cfg(debug_assertions)]
pub async fn versioned(_ctx: ActivityContext, _: ()) -> Result<(), String> {
    Ok(())
}

/// Another in release builds.
#[activity]
#[cfg(not(debug_assertions))]
pub async fn versioned(_ctx: ActivityContext, _: ()) -> Result<(), String> {
    Ok(())
}

fn main() {
    let _ = (send_email, versioned);
}
