// An activity takes the context and the input: an empty parameter list is rejected.
use durable_core::activity;

#[activity]
pub async fn no_params() -> Result<u32, String> {
    Ok(1)
}

fn main() {}
