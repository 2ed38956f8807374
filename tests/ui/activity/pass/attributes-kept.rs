// The function's attributes are kept: docs on the handle (`missing_docs` is denied),
// lint levels on the body (`unused_variables` is denied), `#[cfg]` on every generated
// item (otherwise the two `versioned` handles would clash).
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

/// Present.
#[activity]
#[cfg(all())]
pub async fn versioned(_ctx: ActivityContext, _: ()) -> Result<(), String> {
    Ok(())
}

/// Compiled out.
#[activity]
#[cfg(any())]
pub async fn versioned(_ctx: ActivityContext, _: ()) -> Result<(), String> {
    Ok(())
}

fn main() {
    let _ = (send_email, versioned);
}
