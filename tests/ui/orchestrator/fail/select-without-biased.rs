// Rule 7: `tokio::select!` picks a random ready branch, so a replay can take another one:
// it needs `biased;`. `futures::select!` is always random. (`futures` is a stand-in
// module here.)
use durable_core::{OrchestrationContext, orchestrator};

mod futures {
    macro_rules! select {
        ($($t:tt)*) => {
            0
        };
    }
    pub(crate) use select;
}

#[orchestrator]
pub async fn race(_ctx: OrchestrationContext, _: ()) -> Result<u32, String> {
    let first = tokio::select! {
        a = async { 1 } => a,
        b = async { 2 } => b,
    };
    let second: u32 = futures::select! { a = x => a };
    Ok(first + second)
}

fn main() {}
