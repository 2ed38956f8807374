// Hazards are found inside async blocks and nested blocks.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn nested(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let work = async {
        if true {
            {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    };
    work.await;
    Ok(())
}

fn main() {}
