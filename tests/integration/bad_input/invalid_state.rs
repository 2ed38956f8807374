//! Requests that make no sense for an instance's state.

use super::*;
use durable_core::{ClientRequest, StatusKind};

#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(ctx.wait_event::<String>("go").await)
}

fn assert_refused(result: Result<(), Error>, action: ClientRequest, status: StatusKind) {
    match result {
        Err(Error::InvalidState {
            action: a,
            status: s,
            ..
        }) if a == action && s == status => {}
        other => panic!("expected a refusal to {action} a {status} instance, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_terminations_for_finished_instances_are_refused_and_change_nothing() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let done = client.start(chain, "done", 1).await.unwrap();
    assert_eq!(done.wait(WAIT).await.unwrap(), 6);
    let failed = client
        .start(careful, "failed", Risk::Uncaught)
        .await
        .unwrap();
    assert!(failed.wait(WAIT).await.is_err());
    let before: Vec<_> = ["done", "failed"]
        .iter()
        .map(|id| (store.instance(id).unwrap(), store.history(id).unwrap()))
        .collect();

    for (id, status) in [
        ("done", StatusKind::Completed),
        ("failed", StatusKind::Failed),
    ] {
        assert_refused(
            client.raise_event(id, "go", &"late").await,
            ClientRequest::RaiseEvent,
            status,
        );
        assert_refused(
            client.terminate(id, "too late").await,
            ClientRequest::Terminate,
            status,
        );
        assert_refused(
            client.suspend(id, "too late").await,
            ClientRequest::Suspend,
            status,
        );
    }
    let after: Vec<_> = ["done", "failed"]
        .iter()
        .map(|id| (store.instance(id).unwrap(), store.history(id).unwrap()))
        .collect();
    assert_eq!(before, after, "refused requests write nothing");
    assert_eq!(done.status().await.unwrap(), InstanceStatus::Completed(6));

    // An event no one waits for is kept in the history and harms nothing.
    let waiting = client.start(waits_for_go, "waiting", ()).await.unwrap();
    waiting.raise_event("unrelated", &1).await.unwrap();
    waiting.raise_event("go", &"now".to_string()).await.unwrap();
    assert_eq!(waiting.wait(WAIT).await.unwrap(), "now");
    // A purged instance is not found.
    client.purge("done").await.unwrap();
    let err = client.raise_event("done", "go", &"x").await.unwrap_err();
    assert!(matches!(err, Error::InstanceNotFound(_)), "{err:?}");
    runtime.shutdown().await;
}

#[test]
fn a_stalled_instance_can_be_terminated_but_not_purged_before() {
    let (_dir, store) = store();
    leave_gated(&store, "stuck");
    lifetime(async {
        let runtime = gated(&store, true).start().await.unwrap();
        let client = runtime.client();
        let instance = client.instance(gated_chain, "stuck");
        assert!(matches!(
            instance.wait(WAIT).await,
            Err(Error::Stalled { .. })
        ));
        assert_refused(
            client.purge("stuck").await,
            ClientRequest::Purge,
            StatusKind::Stalled,
        );
        instance.terminate("retired for good").await.unwrap();
        // `wait` returns at once on a stalled instance: watch the status change instead.
        let terminated = InstanceStatus::Terminated("retired for good".into());
        for _ in 0..2000 {
            if instance.status().await.unwrap() == terminated {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(instance.status().await.unwrap(), terminated);
        client.purge("stuck").await.unwrap();
        assert_eq!(store.instance("stuck").unwrap(), None);
        assert_eq!(store.history("stuck").unwrap(), vec![]);
        runtime.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_pending_or_suspended_instance_is_refused_and_it_still_finishes() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(waits_for_go, "paused", ()).await.unwrap();
    instance.suspend("maintenance").await.unwrap();
    until_suspended(&instance).await;
    assert_refused(
        client.purge("paused").await,
        ClientRequest::Purge,
        StatusKind::Suspended,
    );
    let purged = client
        .purge_where(&durable_core::PurgeFilter::new())
        .await
        .unwrap();
    assert_eq!(purged, 0, "purge_where leaves unfinished instances alone");
    // A filter on a status that is never purged is refused, not a filter matching nothing.
    let err = client
        .purge_where(&durable_core::PurgeFilter::new().status(StatusKind::Suspended))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PurgeUnfinished {
                status: StatusKind::Suspended
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("suspended"), "{err}");
    instance
        .raise_event("go", &"resumed".to_string())
        .await
        .unwrap();
    instance.resume().await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), "resumed");
    runtime.shutdown().await;
}
