// Rule 6: what passes through a channel is not recorded; use `ctx.wait_event::<T>(name)`.
// The import of a channel module is reported once, not again at each use.
use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn listen(_ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    use tokio::sync::oneshot;
    let (tx, rx) = tokio::sync::mpsc::channel::<u32>(1);
    let (once_tx, once_rx) = oneshot::channel::<u32>();
    let notify = tokio::sync::Notify::new();
    let _ = (tx, rx, once_tx, once_rx, notify);
    Ok(())
}

fn main() {}
