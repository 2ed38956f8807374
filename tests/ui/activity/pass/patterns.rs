// Parameter patterns, visibility and paths to `Result` are kept as written; the body
// stays callable as `name::run`.
#![deny(warnings)]

use durable_core::{ActivityContext, activity};

mod steps {
    use durable_core::{ActivityContext, activity};

    #[activity]
    pub(crate) async fn sum(
        mut ctx: ActivityContext,
        (a, b): (u32, u32),
    ) -> ::core::result::Result<u32, String> {
        ctx = ctx.clone();
        let _ = ctx;
        Ok(a + b)
    }
}

#[activity]
async fn ignored(_: ActivityContext, _: Vec<String>) -> std::result::Result<(), String> {
    Ok(())
}

fn main() {
    let _ = steps::sum::run;
    let _ = ignored::run;
    let _ = (steps::sum, ignored);
}
