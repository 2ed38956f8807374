// An activity with a `String` error, using `?` on its own fallible steps.
#![deny(warnings)]

use durable_core::{Activity, ActivityContext, activity};

#[activity]
pub async fn parse_amount(_ctx: ActivityContext, text: String) -> Result<u32, String> {
    let amount: u32 = text
        .trim()
        .parse()
        .map_err(|e| format!("bad amount {text:?}: {e}"))?;
    Ok(amount)
}

fn main() {
    fn takes_activity<A: Activity<Input = String, Output = u32, Error = String>>(_: A) {}
    takes_activity(parse_amount);
    assert_eq!(parse_amount::NAME, "parse_amount");
}
