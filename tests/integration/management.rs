//! Instance management from the client: terminate, suspend and resume, purge, list,
//! restart; and what each refuses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable_core::{
    ActivityContext, Error, InstanceQuery, InstanceStatus, OrchestrationContext, PurgeFilter,
    StatusKind, Store, activity, orchestrator,
};

use crate::common::*;
use crate::restart::wait_at_gate;

const WAIT: Duration = Duration::from_secs(30);

/// Waits for a `go` event and returns its payload.
#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(ctx.wait_event::<String>("go").await)
}

#[orchestrator]
async fn gated_flow(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.call(wait_at_gate, 1).await?)
}

fn expect_invalid(result: Result<(), Error>, action: &str) -> String {
    match result {
        Err(e @ Error::InvalidState { .. }) => {
            assert!(e.to_string().contains(action), "{e}");
            e.to_string()
        }
        other => panic!("expected a refusal to {action}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_a_running_instance_and_finished_ones_refuse_requests() {
    let (_dir, store) = store();
    let runtime = gated(&store, false)
        .orchestrator(gated_flow)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(gated_flow, "stuck", ()).await.unwrap();
    let message = expect_invalid(client.purge("stuck").await, "purge");
    assert!(message.contains("terminate it first"), "{message}");

    instance.terminate("no longer needed").await.unwrap();
    let err = instance.wait(WAIT).await.unwrap_err();
    assert!(
        matches!(&err, Error::Terminated { reason, .. } if reason == "no longer needed"),
        "{err:?}"
    );
    assert_eq!(
        instance.status().await.unwrap(),
        InstanceStatus::Terminated("no longer needed".into())
    );
    expect_invalid(instance.terminate("again").await, "terminate");
    expect_invalid(
        instance.raise_event("go", &"late").await,
        "raise an event to",
    );
    expect_invalid(instance.suspend("why").await, "suspend");
    let err = client.raise_event("nobody", "go", &1).await.unwrap_err();
    assert!(matches!(err, Error::InstanceNotFound(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_instance_holds_its_events_until_resumed() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(waits_for_go, "paused", ()).await.unwrap();
    expect_invalid(instance.resume().await, "resume");
    instance.suspend("maintenance").await.unwrap();
    wait_status(&instance, InstanceStatus::Suspended("maintenance".into())).await;
    instance.raise_event("go", &"green light").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        instance.status().await.unwrap(),
        InstanceStatus::Suspended("maintenance".into()),
        "a suspended instance does not run"
    );
    instance.resume().await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), "green light");
    runtime.shutdown().await;
}

async fn wait_status(
    instance: &durable_core::Instance<waits_for_go>,
    want: InstanceStatus<String>,
) {
    for _ in 0..400 {
        if instance.status().await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never reached {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pages_and_purge_removes_finished_instances() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    for i in 0..5 {
        client
            .start(chain, format!("done-{i}"), i)
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap();
    }
    for i in 0..3 {
        client
            .start(waits_for_go, format!("open-{i}"), ())
            .await
            .unwrap();
    }
    let running = client
        .list(
            &InstanceQuery::new()
                .status(StatusKind::Running)
                .status(StatusKind::Pending),
        )
        .await
        .unwrap();
    let ids: Vec<_> = running.instances.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["open-0", "open-1", "open-2"]);

    let mut query = InstanceQuery::new().orchestrator(chain).page_size(2);
    let mut pages = Vec::new();
    loop {
        let page = client.list(&query).await.unwrap();
        pages.push(
            page.instances
                .iter()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>(),
        );
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [
            vec!["done-0", "done-1"],
            vec!["done-2", "done-3"],
            vec!["done-4"]
        ]
    );

    client.purge("done-0").await.unwrap();
    assert!(matches!(
        client.purge("done-0").await,
        Err(Error::InstanceNotFound(_))
    ));
    assert!(
        durable_core::Store::history(&store, "done-0")
            .unwrap()
            .is_empty()
    );
    let purged = client
        .purge_where(&PurgeFilter::new().status(StatusKind::Completed))
        .await
        .unwrap();
    assert_eq!(purged, 4, "the running instances are left alone");
    let left = client.list(&InstanceQuery::new()).await.unwrap();
    assert_eq!(left.instances.len(), 3);
    runtime.shutdown().await;
}

/// Fails the first time it runs (per process), succeeds after.
#[activity]
async fn fails_once(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let _ = &ctx;
    if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("first run fails".into());
    }
    Ok(n + 1)
}

#[orchestrator]
async fn fragile(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(fails_once, n).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_instance_restarts_from_its_original_input() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(fragile)
        .activity(fails_once)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(fragile, "fragile", 41).await.unwrap();
    assert!(matches!(
        instance.wait(WAIT).await,
        Err(Error::Failed { .. })
    ));
    client.restart("fragile").await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 42);
    expect_invalid(client.restart("fragile").await, "restart");
    runtime.shutdown().await;
}

/// Continues as new forever.
#[orchestrator]
async fn spinning(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    ctx.continue_as_new(n + 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_an_instance_that_continues_as_new_forever() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(spinning)
        .start()
        .await
        .unwrap();
    let instance = runtime.client().start(spinning, "spin", 0).await.unwrap();
    while store.instance("spin").unwrap().unwrap().generation < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    instance.terminate("runaway").await.unwrap();
    let err = instance.wait(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Terminated { reason, .. } if reason == "runaway"),
        "{err:?}"
    );
    runtime.shutdown().await;
}
