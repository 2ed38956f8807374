// An activity without input takes `()`, and one without output returns `()`.
#![deny(warnings)]

use durable_core::{Activity, ActivityContext, activity};

#[activity]
pub async fn ping(_ctx: ActivityContext, _: ()) -> Result<(), String> {
    Ok(())
}

fn main() {
    let _: <ping as Activity>::Input = ();
    let _: <ping as Activity>::Output = ();
}
