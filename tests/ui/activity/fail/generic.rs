// A handle is one concrete type: generic parameters and where clauses are rejected.
use durable_core::{ActivityContext, activity};

#[activity]
pub async fn generic<T>(_ctx: ActivityContext, input: T) -> Result<T, String>
where
    T: Clone,
{
    Ok(input)
}

fn main() {}
