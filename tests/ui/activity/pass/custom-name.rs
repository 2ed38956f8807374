// `name = "..."` sets the registered name; without it the name is the function's, raw
// identifiers included.
#![deny(warnings)]

use durable_core::{Activity, ActivityContext, activity};

#[activity(name = "billing.charge")]
pub async fn charge(_ctx: ActivityContext, amount: u32) -> Result<u32, String> {
    Ok(amount)
}

#[activity]
pub async fn r#type(_ctx: ActivityContext, text: String) -> Result<String, String> {
    Ok(text)
}

fn main() {
    assert_eq!(<charge as Activity>::NAME, "billing.charge");
    assert_eq!(<r#type as Activity>::NAME, "type");
}
