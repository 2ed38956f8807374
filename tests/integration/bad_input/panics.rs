//! Panicking orchestrators and activities.

use super::*;

#[orchestrator]
async fn panics_after_a_step(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    if a == 4 {
        panic!("orchestrator gave up on {a}");
    }
    Ok(a)
}

#[orchestrator]
async fn parent_of_a_panic(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    match ctx.sub_orchestration(panics_after_a_step, n).await {
        Ok(v) => Ok(format!("ok {v}")),
        Err(e) => Ok(format!(
            "{} panicked={}: {}",
            e.instance_id(),
            e.failure().kind == FailureKind::Panicked,
            e.message()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_orchestrator_fails_its_instance_and_its_parent_is_told() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(panics_after_a_step)
        .orchestrator(parent_of_a_panic)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let err = client
        .start(panics_after_a_step, "p", 2)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    let Error::Failed { failure, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failure.kind, FailureKind::Panicked);
    assert_eq!(
        failure.message,
        "orchestrator `panics_after_a_step` panicked: orchestrator gave up on 4"
    );
    let told = client
        .start(parent_of_a_panic, "pp", 2)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    let incarnation = client.record("pp").await.unwrap().unwrap().incarnation;
    assert_eq!(
        told,
        format!(
            "~pp~{incarnation:x}.0.0 panicked=true: orchestrator `panics_after_a_step` panicked: orchestrator gave up on 4"
        )
    );
    // The runtime goes on.
    let ok = client.start(panics_after_a_step, "fine", 3).await.unwrap();
    assert_eq!(ok.wait(WAIT).await.unwrap(), 6);
    runtime.shutdown().await;
}

/// Panics only when it replays, as code that reads something outside the history would.
#[orchestrator]
async fn panics_on_replay(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    if ctx.is_replaying() {
        panic!("cannot replay");
    }
    Ok(ctx.call(wait_at_gate, n).await?)
}

#[test]
fn an_orchestrator_that_panics_when_replayed_after_a_restart_fails_with_its_message() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(panics_on_replay)
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(panics_on_replay, "r", 1)
            .await
            .unwrap();
        // Its first turn: `Started` and the activity it scheduled (behind the turn's time).
        crate::patterns::wait_for(&store, "r", |h| {
            (h.iter())
                .filter(|e| !matches!(e, Event::TurnStarted { .. }))
                .count()
                == 2
        })
        .await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(panics_on_replay)
            .start()
            .await
            .unwrap();
        let err = runtime
            .client()
            .instance(panics_on_replay, "r")
            .wait(WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Failed { failure, .. }
                if failure.kind == FailureKind::Panicked && failure.message.ends_with("cannot replay")),
            "{err:?}"
        );
        runtime.shutdown().await;
    });
}

#[activity]
async fn panics_with_a_number(_ctx: ActivityContext, _: ()) -> Result<u64, String> {
    std::panic::panic_any(42_u32);
}

#[orchestrator]
async fn retries_a_panic(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(10));
    match ctx.call_with_retry(panics_with_a_number, (), policy).await {
        Ok(v) => Ok(v),
        Err(e) => Err(format!(
            "attempt {} panic={}: {}",
            e.attempt(),
            e.is_panic(),
            e.message()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_that_always_panics_is_retried_then_reported_even_without_a_message() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(retries_a_panic)
        .activity(panics_with_a_number)
        .start()
        .await
        .unwrap();
    let err = runtime
        .client()
        .start(retries_a_panic, "n", ())
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Failed { failure, .. }
            if failure.message == "attempt 3 panic=true: panic with a non-string payload"),
        "{err:?}"
    );
    runtime.shutdown().await;
}
