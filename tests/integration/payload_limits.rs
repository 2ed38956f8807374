//! Payloads over the runtime's size limit (`RuntimeBuilder::max_payload_bytes`): refused
//! where they are made, with a typed error naming the payload, and never written.

use std::time::Duration;

use durable_core::record::{Event, Failure, FailureKind, Status};
use durable_core::{
    ActivityContext, DEFAULT_MAX_PAYLOAD_BYTES, Error, OrchestrationContext, RetryPolicy, Store,
    activity, orchestrator,
};
use serde::{Deserialize, Serialize};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);
const LIMIT: usize = 1024;
/// A payload over `LIMIT` once encoded.
const BIG: usize = 2 * LIMIT;

#[orchestrator]
async fn echo(_ctx: OrchestrationContext, input: Vec<u8>) -> Result<usize, String> {
    Ok(input.len())
}

#[orchestrator]
async fn waits_for_blob(ctx: OrchestrationContext, _: ()) -> Result<usize, String> {
    Ok(ctx.wait_event::<Vec<u8>>("blob").await.len())
}

#[activity]
async fn blob_of(_ctx: ActivityContext, size: usize) -> Result<Vec<u8>, String> {
    Ok(vec![7; size])
}

#[activity]
async fn length(_ctx: ActivityContext, blob: Vec<u8>) -> Result<usize, String> {
    Ok(blob.len())
}

/// Fails with an error message of `size` bytes.
#[activity]
async fn fails_long(_ctx: ActivityContext, size: usize) -> Result<(), String> {
    Err("x".repeat(size))
}

/// How an activity's error reached the orchestrator.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Seen {
    retryable: bool,
    typed: Option<usize>,
    message_len: usize,
    message: String,
}

/// Calls `fails_long(size)`, or fails itself with such an error; says how the call ended.
#[orchestrator]
async fn long_errors(
    ctx: OrchestrationContext,
    (size, own): (usize, bool),
) -> Result<Seen, String> {
    if own {
        return Err("y".repeat(size));
    }
    let e = ctx.call(fails_long, size).await.unwrap_err();
    let message = e.message();
    Ok(Seen {
        retryable: e.is_retryable(),
        typed: e.error::<String>().map(|s| s.len()),
        message_len: message.len(),
        // Its start and its end, to keep the output small.
        message: format!("{}...{}", &message[..3], &message[message.len() - 80..]),
    })
}

/// Fails on its first attempt with an error message of `size` bytes, then succeeds.
#[activity]
async fn fails_long_once(ctx: ActivityContext, size: usize) -> Result<u32, String> {
    if ctx.attempt() == 1 {
        return Err("x".repeat(size));
    }
    Ok(ctx.attempt())
}

/// Retries `fails_long_once(size)`; returns the attempt that succeeded.
#[orchestrator]
async fn retries_long_error(ctx: OrchestrationContext, size: usize) -> Result<u32, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(1));
    Ok(ctx.call_with_retry(fails_long_once, size, policy).await?)
}

/// Saves a checkpoint of `size` bytes; says what `save_progress` answered.
#[activity]
async fn checkpoint(ctx: ActivityContext, size: usize) -> Result<String, String> {
    match ctx.save_progress(&vec![1_u8; size]).await {
        Ok(()) => Ok("saved".into()),
        Err(Error::PayloadTooLarge(e)) => Ok(format!("refused {} of {}", e.size, e.limit)),
        Err(e) => Err(e.to_string()),
    }
}

/// Where an orchestrator makes a payload too large.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
enum Oversized {
    ActivityInput,
    SubOrchestrationInput,
    Recorded,
    CustomStatus,
    ContinueAsNewInput,
    Output,
}

#[orchestrator]
async fn makes_big(
    ctx: OrchestrationContext,
    (place, _padding): (Oversized, Vec<u8>),
) -> Result<Vec<u8>, String> {
    // A small step first: what went before the oversized payload is kept.
    let small = ctx.call(length, vec![1; 10]).await?;
    let big = vec![9_u8; BIG];
    match place {
        Oversized::ActivityInput => {
            ctx.call(length, big).await?;
        }
        Oversized::SubOrchestrationInput => {
            ctx.sub_orchestration(echo, big).await?;
        }
        Oversized::Recorded => {
            ctx.side_effect(|| big);
        }
        Oversized::CustomStatus => ctx.set_custom_status(&big),
        Oversized::ContinueAsNewInput => return ctx.continue_as_new((place, big)).await,
        Oversized::Output => return Ok(big),
    }
    Ok(vec![small as u8])
}

/// Calls `blob_of(size)`; says how the call ended.
#[orchestrator]
async fn fetches(ctx: OrchestrationContext, size: usize) -> Result<String, String> {
    match ctx.call(blob_of, size).await {
        Ok(blob) => Ok(format!("got {}", blob.len())),
        Err(e) => Ok(format!(
            "too large: {}; {}",
            matches!(e.failure().kind, FailureKind::TooLarge { .. }),
            e.message()
        )),
    }
}

/// Calls `blob_of(size)` with up to five attempts; says on which attempt it gave up.
#[orchestrator]
async fn fetches_with_retry(ctx: OrchestrationContext, size: usize) -> Result<String, String> {
    let policy = RetryPolicy::fixed(5, Duration::from_millis(1));
    match ctx.call_with_retry(blob_of, size, policy).await {
        Ok(blob) => Ok(format!("got {}", blob.len())),
        Err(e) => Ok(format!(
            "gave up on attempt {}, retryable: {}",
            e.attempt(),
            e.is_retryable()
        )),
    }
}

#[orchestrator]
async fn saves(ctx: OrchestrationContext, size: usize) -> Result<String, String> {
    Ok(ctx.call(checkpoint, size).await?)
}

/// Passes a 2 KiB blob to an activity and a child, records one and sets one as its
/// status, then waits for an event.
#[orchestrator]
async fn passes_blob_then_waits(ctx: OrchestrationContext, _: ()) -> Result<usize, String> {
    let n = ctx.call(length, vec![3; BIG]).await?;
    let m = ctx.sub_orchestration(echo, vec![4; BIG]).await?;
    let recorded = ctx.side_effect(|| vec![5_u8; BIG]);
    ctx.set_custom_status(&vec![6_u8; BIG]);
    ctx.wait_event::<()>("go").await;
    Ok(n + m + recorded.len())
}

/// The largest payload any event of `history` carries.
fn largest_payload(history: &[Event]) -> usize {
    history
        .iter()
        .map(|event| match event {
            Event::Started { input, .. }
            | Event::ActivityScheduled { input, .. }
            | Event::SubOrchestrationScheduled { input, .. }
            | Event::ContinuedAsNew { input } => input.len(),
            Event::ActivityCompleted { output, .. }
            | Event::SubOrchestrationCompleted { output, .. }
            | Event::Completed { output } => output.len(),
            Event::Recorded { value, .. } => value.len(),
            Event::EventRaised { payload, .. } => payload.len(),
            Event::CustomStatusSet { status } => status.len(),
            Event::ActivityFailed { failure, .. }
            | Event::SubOrchestrationFailed { failure, .. }
            | Event::Failed { failure } => failure_size(failure),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The bytes a failure stores: its message and its error value.
fn failure_size(failure: &Failure) -> usize {
    let value = match &failure.kind {
        FailureKind::Returned { payload } => payload.len(),
        _ => 0,
    };
    failure.message.len() + value
}

fn limited(store: durable_core::FjallStore) -> durable_core::RuntimeBuilder {
    builder(store)
        .orchestrator(echo)
        .orchestrator(waits_for_blob)
        .orchestrator(makes_big)
        .orchestrator(fetches)
        .orchestrator(saves)
        .orchestrator(long_errors)
        .orchestrator(retries_long_error)
        .activity(fails_long)
        .activity(fails_long_once)
        .orchestrator(fetches_with_retry)
        .activity(blob_of)
        .activity(length)
        .activity(checkpoint)
        .max_payload_bytes(LIMIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_an_input_over_the_limit_is_refused_and_creates_nothing() {
    let (_dir, store) = store();
    let runtime = limited(store.clone()).start().await.unwrap();
    let client = runtime.client();
    let err = client.start(echo, "big", vec![0; BIG]).await.unwrap_err();
    let Error::PayloadTooLarge(too_large) = &err else {
        panic!("expected PayloadTooLarge, got {err:?}");
    };
    assert_eq!(too_large.limit, LIMIT);
    assert!(too_large.size > LIMIT, "{too_large:?}");
    assert_eq!(too_large.what, "the input of orchestrator `echo`");
    assert!(
        err.to_string()
            .contains("RuntimeBuilder::max_payload_bytes"),
        "{err}"
    );
    assert!(store.instance("big").unwrap().is_none());
    // At the limit is fine: 500 zeros are 1001 bytes of JSON.
    let fits = client.start(echo, "fits", vec![0; 500]).await.unwrap();
    assert_eq!(fits.wait(WAIT).await.unwrap(), 500);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_the_limit_is_refused_and_the_instance_keeps_waiting() {
    let (_dir, store) = store();
    let runtime = limited(store.clone()).start().await.unwrap();
    let instance = runtime
        .client()
        .start(waits_for_blob, "waiting", ())
        .await
        .unwrap();
    let err = instance
        .raise_event("blob", &vec![0_u8; BIG])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PayloadTooLarge(e) if e.what == "the payload of event `blob`"),
        "{err:?}"
    );
    instance.raise_event("blob", &vec![0_u8; 10]).await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 10);
    assert!(largest_payload(&store.history("waiting").unwrap()) <= LIMIT);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_output_over_the_limit_fails_the_call_and_the_orchestrator_handles_it() {
    let (_dir, store) = store();
    let runtime = limited(store.clone()).start().await.unwrap();
    let client = runtime.client();
    let out = client
        .start(fetches, "fetch-big", BIG)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert!(
        out.starts_with("too large: true; the output of activity `blob_of` is")
            && out.contains(&format!("over the payload limit of {LIMIT} bytes")),
        "{out}"
    );
    let small = client.start(fetches, "fetch-small", 100).await.unwrap();
    assert_eq!(small.wait(WAIT).await.unwrap(), "got 100");
    assert!(largest_payload(&store.history("fetch-big").unwrap()) <= LIMIT);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_limit_is_not_retried_as_it_would_fail_again() {
    let (_dir, store) = store();
    let runtime = limited(store).start().await.unwrap();
    let out = runtime
        .client()
        .start(fetches_with_retry, "retry-big", BIG)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(out, "gave up on attempt 1, retryable: false");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_over_the_limit_are_cut_to_fit_and_keep_their_kind() {
    let (_dir, store) = store();
    let runtime = limited(store.clone()).start().await.unwrap();
    let client = runtime.client();
    // The message and the encoded `String` error value, counted together.
    let cut = format!(
        "[cut: the error was {} bytes, over the payload limit of {LIMIT} bytes]",
        2 * BIG + 2
    );
    let seen = client
        .start(long_errors, "activity-error", (BIG, false))
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert!(seen.retryable && seen.typed.is_none(), "{seen:?}");
    assert!(seen.message_len <= LIMIT, "{seen:?}");
    assert!(
        seen.message.starts_with("xxx...") && seen.message.ends_with(&cut),
        "{seen:?}"
    );
    let err = client
        .start(long_errors, "own-error", (BIG, true))
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Failed { failure, .. }
            if failure.kind == FailureKind::Returned { payload: vec![] }
                && failure.message.starts_with("yyy")
                && failure.message.ends_with(&cut)),
        "{err:?}"
    );
    assert_eq!(err.orchestrator_error::<String>(), None);
    // An error's size says nothing of the next attempt: it is retried.
    let retried = client
        .start(retries_long_error, "retried", BIG)
        .await
        .unwrap();
    assert_eq!(retried.wait(WAIT).await.unwrap(), 2);
    for id in ["activity-error", "own-error"] {
        let history = store.history(id).unwrap();
        assert!(largest_payload(&history) <= LIMIT, "{id}: {history:?}");
        let record = store.instance(id).unwrap().unwrap();
        if let Status::Failed { failure } = &record.status {
            assert!(failure_size(failure) <= LIMIT, "{id}: {failure:?}");
        }
    }
    // A small error is kept as it is.
    let small = client
        .start(long_errors, "small-error", (10, true))
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&small, Error::Failed { failure, .. } if failure.message == "y".repeat(10)),
        "{small:?}"
    );
    // A reason given to terminate over the limit is refused.
    let waiting = client.start(waits_for_blob, "reasons", ()).await.unwrap();
    let err = waiting.terminate(&"z".repeat(BIG)).await.unwrap_err();
    assert!(
        matches!(&err, Error::PayloadTooLarge(e) if e.what == "the terminate reason"),
        "{err:?}"
    );
    waiting.terminate("short").await.unwrap();
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_checkpoint_over_the_limit_is_refused_to_the_activity() {
    let (_dir, store) = store();
    let runtime = limited(store).start().await.unwrap();
    let client = runtime.client();
    let big = client.start(saves, "save-big", BIG).await.unwrap();
    let encoded = serde_json::to_vec(&vec![1_u8; BIG]).unwrap().len();
    assert_eq!(
        big.wait(WAIT).await.unwrap(),
        format!("refused {encoded} of {LIMIT}")
    );
    let small = client.start(saves, "save-small", 10).await.unwrap();
    assert_eq!(small.wait(WAIT).await.unwrap(), "saved");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_limit_made_by_an_orchestrator_fails_it_and_is_never_written() {
    let (_dir, store) = store();
    let runtime = limited(store.clone()).start().await.unwrap();
    let client = runtime.client();
    let places = [
        (Oversized::ActivityInput, "the input of activity `length`"),
        (
            Oversized::SubOrchestrationInput,
            "the input of sub-orchestration `echo`",
        ),
        (
            Oversized::Recorded,
            "the value recorded by `ctx.side_effect`",
        ),
        (Oversized::CustomStatus, "the custom status"),
        (
            Oversized::ContinueAsNewInput,
            "the input of the next generation of `makes_big`",
        ),
        (Oversized::Output, "the output of orchestrator `makes_big`"),
    ];
    for (place, what) in places {
        let id = format!("{place:?}");
        let err = client
            .start(makes_big, id.clone(), (place, Vec::new()))
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Failed { failure, .. } = &err else {
            panic!("{place:?}: expected a failed instance, got {err:?}");
        };
        assert!(
            matches!(failure.kind, FailureKind::TooLarge { size, limit }
                if size > LIMIT as u64 && limit == LIMIT as u64),
            "{place:?}: {failure:?}"
        );
        assert!(
            failure.message.starts_with(&format!("{what} is ")),
            "{place:?}: {}",
            failure.message
        );
        let history = store.history(&id).unwrap();
        assert!(
            largest_payload(&history) <= LIMIT,
            "{place:?}: an oversized payload was written: {history:?}"
        );
        assert!(
            history
                .iter()
                .any(|e| matches!(e, Event::ActivityCompleted { .. })),
            "{place:?}: the step before it is kept"
        );
        let record = store.instance(&id).unwrap().unwrap();
        assert!(
            matches!(record.status, Status::Failed { .. }) && record.custom_status.is_none(),
            "{place:?}: {:?}",
            record.status
        );
    }
    assert!(
        store
            .instances()
            .unwrap()
            .iter()
            .all(|(id, _)| !id.starts_with("~SubOrchestrationInput~")),
        "no child was started with an oversized input"
    );
    runtime.shutdown().await;
}

#[test]
fn lowering_the_limit_does_not_fail_instances_over_payloads_already_recorded() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(passes_blob_then_waits)
            .orchestrator(echo)
            .activity(length)
            .start()
            .await
            .unwrap();
        const { assert!(BIG <= DEFAULT_MAX_PAYLOAD_BYTES) };
        runtime
            .client()
            .start(passes_blob_then_waits, "old", ())
            .await
            .unwrap();
        crate::patterns::wait_for(&store, "old", |h| {
            h.iter().any(|e| matches!(e, Event::CustomStatusSet { .. }))
        })
        .await;
        runtime.shutdown().await;
    });
    lifetime(async {
        // The new limit is lower than the payloads recorded: replaying them is fine.
        let runtime = builder(store.clone())
            .orchestrator(passes_blob_then_waits)
            .orchestrator(echo)
            .activity(length)
            .max_payload_bytes(LIMIT)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(passes_blob_then_waits, "old");
        instance.raise_event("go", &()).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 3 * BIG);
        assert_eq!(runtime.replay_count(), 1);
        runtime.shutdown().await;
    });
}
