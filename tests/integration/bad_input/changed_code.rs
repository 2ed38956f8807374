//! Payloads whose types changed under running instances.

use super::*;

#[activity(name = "measure")]
async fn measure_v1(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n + 1)
}

/// A later deploy: the same activity now returns a `String`.
#[activity(name = "measure")]
async fn measure_v2(_ctx: ActivityContext, n: u64) -> Result<String, String> {
    Ok(format!("{n}"))
}

#[orchestrator(name = "measured")]
async fn measured_v1(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let m = ctx.call(measure_v1, n).await?;
    Ok(ctx.call(wait_at_gate, m).await?)
}

#[orchestrator(name = "measured")]
async fn measured_v2(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let m = ctx.call(measure_v2, n).await?;
    Ok(ctx.call(wait_at_gate, m.len() as u64).await?)
}

#[test]
fn an_activity_output_whose_type_changed_stalls_that_instance_naming_the_type_until_rolled_back() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(measured_v1)
            .activity(measure_v1)
            .start()
            .await
            .unwrap();
        runtime.client().start(measured_v1, "m", 40).await.unwrap();
        crate::patterns::wait_for(&store, "m", |h| {
            h.iter()
                .any(|e| matches!(e, Event::ActivityCompleted { seq: 0, .. }))
        })
        .await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(measured_v2)
            .activity(measure_v2)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let err = client
            .instance(measured_v2, "m")
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Stalled { failure, .. } = &err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert!(
            matches!(&failure.kind, FailureKind::Decode { type_name } if type_name.contains("String")),
            "{failure:?}"
        );
        assert!(
            failure.message.contains("was its type changed?"),
            "{}",
            failure.message
        );
        // New instances run the new code.
        let fresh = client.start(measured_v2, "m2", 40).await.unwrap();
        assert_eq!(fresh.wait(WAIT).await.unwrap(), 2 + 1000);
        runtime.shutdown().await;
    });
    // Rolled back: the instance resumes where it stalled, with the gate's result the
    // stalled turn kept (its redelivery, attempt 2).
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(measured_v1)
            .activity(measure_v1)
            .start()
            .await
            .unwrap();
        let output = runtime
            .client()
            .instance(measured_v1, "m")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(output, 41 + 2000);
        runtime.shutdown().await;
    });
}

/// Waits for an `amount` event and adds one.
#[orchestrator]
pub(super) async fn takes_amount(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.wait_event::<u64>("amount").await + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_payload_of_the_wrong_type_is_set_aside_naming_the_type() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(takes_amount)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(takes_amount, "amount", ()).await.unwrap();
    instance
        .raise_event("amount", &"twelve".to_string())
        .await
        .unwrap();
    crate::patterns::wait_for(&store, "amount", |h| {
        h.iter().any(|e| matches!(e, Event::EventSetAside { .. }))
    })
    .await;
    assert_eq!(instance.status().await.unwrap(), InstanceStatus::Running);
    let set_aside = instance.set_aside_events().await.unwrap();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(set_aside[0].name, "amount");
    assert_eq!(set_aside[0].payload_json().unwrap(), "twelve");
    assert!(set_aside[0].reason.contains("`u64`"), "{:?}", set_aside[0]);
    // The wait takes the next event of the right type.
    instance.raise_event("amount", &12_u64).await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 13);
    runtime.shutdown().await;
}
