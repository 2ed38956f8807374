//! Adversarial cases found in review of issue 11: each asserts what a user of the runtime
//! would notice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_core::{ActivityContext, OrchestrationContext, activity, orchestrator};
use tokio::sync::watch;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

/// What the executions of an activity saw: `(call, attempt)`, in order.
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<(u32, u32)>>);

impl Seen {
    fn entries(&self) -> Vec<(u32, u32)> {
        self.0.lock().unwrap().clone()
    }

    async fn until_len(&self, n: usize) {
        for _ in 0..4_000 {
            if self.0.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never {n} executions: {:?}", self.entries());
    }
}

/// Logs `(call, attempt)`; call 0 then waits until the test lets it go.
#[activity]
async fn queued(ctx: ActivityContext, call: u32) -> Result<u32, String> {
    ctx.state::<Arc<Seen>>()
        .0
        .lock()
        .unwrap()
        .push((call, ctx.attempt()));
    if call == 0 {
        let mut go = ctx.state::<watch::Receiver<bool>>().clone();
        let _ = go.wait_for(|go| *go).await;
    }
    Ok(ctx.attempt())
}

#[orchestrator]
async fn two_queued(ctx: OrchestrationContext, _: ()) -> Result<(u32, u32), String> {
    let (a, b) = ctx.join2(ctx.call(queued, 0), ctx.call(queued, 1)).await;
    Ok((a?, b?))
}

/// A call that waited for a slot through a graceful shutdown never executed before the
/// next start: its first execution is attempt 1, as `ActivityContext::attempt` promises
/// ("each execution counts once").
#[test]
fn an_activity_that_never_started_before_a_shutdown_runs_as_its_first_attempt() {
    let (_dir, store) = store();
    let seen = Arc::new(Seen::default());
    let (go, wait) = watch::channel(false);
    let runtime = || {
        builder(store.clone())
            .orchestrator(two_queued)
            .activity(queued)
            .activity_concurrency(1)
            .state(seen.clone())
            .state(wait.clone())
    };
    lifetime(async {
        let runtime = runtime().start().await.unwrap();
        runtime.client().start(two_queued, "q", ()).await.unwrap();
        seen.until_len(1).await;
        let stopping = runtime.shutdown();
        tokio::pin!(stopping);
        // Polled once: the runtime stops taking work, then waits for call 0 to end.
        tokio::select! {
            biased;
            () = &mut stopping => panic!("shut down while call 0 still runs"),
            () = std::future::ready(()) => {}
        }
        go.send_replace(true);
        stopping.await;
    });
    assert_eq!(seen.entries(), [(0, 1)], "call 1 waited for the slot");
    let output = lifetime(async {
        let runtime = runtime().start().await.unwrap();
        let instance = runtime.client().instance(two_queued, "q");
        let output = instance.wait(WAIT).await.unwrap();
        runtime.shutdown().await;
        output
    });
    assert_eq!(seen.entries(), [(0, 1), (1, 1)], "the executions");
    assert_eq!(output, (1, 1));
}
