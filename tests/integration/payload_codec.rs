//! Payloads across a real deploy: an instance runs on fjall with v1 of a type, the runtime
//! stops, and v2 code of the same orchestrator (name and version) resumes it. A type edited
//! in a compatible way decodes to the value that was stored, by field and variant name; a
//! real change of type stalls the instance, naming the type, and a rollback resumes it where
//! it was. Events are typed by their name, and one of the wrong type is set aside.

use std::time::Duration;

use durable_core::record::{Event, FailureKind};
use durable_core::{
    ActivityContext, Error, EventName, FjallStore, InstanceStatus, OrchestrationContext,
    Orchestrator, RuntimeBuilder, Store, activity, orchestrator,
};
use serde::{Deserialize, Serialize};

use crate::common::*;
use crate::patterns::wait_for;
use crate::restart::wait_at_gate;

const WAIT: Duration = Duration::from_secs(30);

/// Starts `v1` as instance `id` with `input` and runs it until it waits at the gate (or,
/// with `also`, until `also` holds for its history), in a runtime that then stops; then
/// starts a runtime with `v2` and the gate open, and returns the instance's output.
fn across_deploy<O1: Orchestrator, O2: Orchestrator>(
    (v1, with_v1): (O1, fn(RuntimeBuilder) -> RuntimeBuilder),
    input: O1::Input,
    (v2, with_v2): (O2, fn(RuntimeBuilder) -> RuntimeBuilder),
    before_stop: impl AsyncFnOnce(&FjallStore, &durable_core::Client),
) -> Result<O2::Output, Error> {
    let (_dir, store) = store();
    let id = "deployed";
    lifetime(async {
        let runtime = with_v1(gated(&store, false).orchestrator(v1))
            .start()
            .await
            .unwrap();
        runtime.client().start(v1, id, input).await.unwrap();
        wait_for(&store, id, |h| {
            h.iter().any(
                |e| matches!(e, Event::ActivityScheduled { activity, .. } if activity == "wait_at_gate"),
            )
        })
        .await;
        before_stop(&store, &runtime.client()).await;
    });
    lifetime(async {
        let runtime = with_v2(gated(&store, true).orchestrator(v2))
            .start()
            .await
            .unwrap();
        let output = runtime.client().instance(v2, id).wait(WAIT).await;
        runtime.shutdown().await;
        output
    })
}

fn nothing(builder: RuntimeBuilder) -> RuntimeBuilder {
    builder
}

async fn stop_at_once(_: &FjallStore, _: &durable_core::Client) {}

// ---- Variants listed the other way round: an activity's output ----

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum DecisionV1 {
    Approve,
    Reject,
}

/// The next deploy lists the variants the other way round.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum DecisionV2 {
    Reject,
    Approve,
}

#[activity(name = "decide")]
async fn decide_v1(_ctx: ActivityContext, amount: u64) -> Result<DecisionV1, String> {
    Ok(if amount < 1_000 {
        DecisionV1::Approve
    } else {
        DecisionV1::Reject
    })
}

#[activity(name = "decide")]
async fn decide_v2(_ctx: ActivityContext, amount: u64) -> Result<DecisionV2, String> {
    Ok(if amount < 1_000 {
        DecisionV2::Approve
    } else {
        DecisionV2::Reject
    })
}

#[orchestrator(name = "review")]
async fn review_v1(ctx: OrchestrationContext, amount: u64) -> Result<String, String> {
    let decision = ctx.call(decide_v1, amount).await?;
    ctx.call(wait_at_gate, amount).await?;
    Ok(format!("{decision:?}"))
}

#[orchestrator(name = "review")]
async fn review_v2(ctx: OrchestrationContext, amount: u64) -> Result<DecisionV2, String> {
    let decision = ctx.call(decide_v2, amount).await?;
    ctx.call(wait_at_gate, amount).await?;
    Ok(decision)
}

#[test]
fn an_output_replays_as_its_variant_after_the_variants_are_reordered() {
    let output = across_deploy(
        (review_v1, |b| b.activity(decide_v1)),
        100,
        (review_v2, |b| b.activity(decide_v2)),
        stop_at_once,
    );
    assert_eq!(output.unwrap(), DecisionV2::Approve);
}

// ---- Fields listed the other way round: an orchestrator's input ----

#[derive(Debug, Serialize, Deserialize)]
struct TotalV1 {
    net: u64,
    tax: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TotalV2 {
    tax: u64,
    net: u64,
}

#[orchestrator(name = "invoice")]
async fn invoice_v1(ctx: OrchestrationContext, total: TotalV1) -> Result<u64, String> {
    ctx.call(wait_at_gate, 0).await?;
    Ok(total.net + total.tax)
}

#[orchestrator(name = "invoice")]
async fn invoice_v2(ctx: OrchestrationContext, total: TotalV2) -> Result<(u64, u64), String> {
    ctx.call(wait_at_gate, 0).await?;
    Ok((total.net, total.tax))
}

#[test]
fn an_input_replays_field_by_field_after_the_fields_are_reordered() {
    let total = TotalV1 { net: 100, tax: 7 };
    let output = across_deploy(
        (invoice_v1, nothing),
        total,
        (invoice_v2, nothing),
        stop_at_once,
    );
    assert_eq!(output.unwrap(), (100, 7), "(net, tax)");
}

// ---- `u32` read as `i32`: a recorded value ----

#[orchestrator(name = "counted")]
async fn counted_v1(ctx: OrchestrationContext, _: ()) -> Result<i64, String> {
    let n: u32 = ctx.side_effect(|| 2);
    ctx.call(wait_at_gate, 0).await?;
    Ok(i64::from(n))
}

#[orchestrator(name = "counted")]
async fn counted_v2(ctx: OrchestrationContext, _: ()) -> Result<i64, String> {
    // Replayed: the recorded value, not this one.
    let n: i32 = ctx.side_effect(|| -5);
    ctx.call(wait_at_gate, 0).await?;
    Ok(i64::from(n))
}

#[test]
fn a_recorded_u32_reads_as_the_same_i32() {
    let output = across_deploy(
        (counted_v1, nothing),
        (),
        (counted_v2, nothing),
        stop_at_once,
    );
    assert_eq!(output.unwrap(), 2);
}

// ---- A field added with `#[serde(default)]`: an event raised before the deploy ----

#[derive(Debug, Serialize, Deserialize)]
struct ClaimV1 {
    amount: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ClaimV2 {
    amount: u64,
    #[serde(default)]
    currency: String,
}

const CLAIM_V1: EventName<ClaimV1> = EventName::new("claim");
const CLAIM_V2: EventName<ClaimV2> = EventName::new("claim");

#[orchestrator(name = "claims")]
async fn claims_v1(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    ctx.call(wait_at_gate, 0).await?;
    let claim = ctx.wait_event(CLAIM_V1).await;
    Ok(format!("{}", claim.amount))
}

#[orchestrator(name = "claims")]
async fn claims_v2(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    ctx.call(wait_at_gate, 0).await?;
    let claim = ctx.wait_event(CLAIM_V2).await;
    Ok(format!("{} {:?}", claim.amount, claim.currency))
}

#[test]
fn an_in_flight_event_decodes_after_a_field_with_a_default_is_added() {
    let output = across_deploy(
        (claims_v1, nothing),
        (),
        (claims_v2, nothing),
        async |store, client| {
            let instance = client.instance(claims_v1, "deployed");
            instance
                .raise_event(CLAIM_V1, &ClaimV1 { amount: 35 })
                .await
                .unwrap();
            wait_for(store, "deployed", |h| {
                h.iter().any(|e| matches!(e, Event::EventRaised { .. }))
            })
            .await;
        },
    );
    assert_eq!(output.unwrap(), "35 \"\"");
}

// ---- A removed field: an orchestrator's input ----

#[derive(Debug, Serialize, Deserialize)]
struct FilingV1 {
    amount: u64,
    note: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct FilingV2 {
    amount: u64,
}

#[orchestrator(name = "filing")]
async fn filing_v1(ctx: OrchestrationContext, filing: FilingV1) -> Result<u64, String> {
    ctx.call(wait_at_gate, 0).await?;
    Ok(filing.amount + filing.note.len() as u64)
}

#[orchestrator(name = "filing")]
async fn filing_v2(ctx: OrchestrationContext, filing: FilingV2) -> Result<u64, String> {
    ctx.call(wait_at_gate, 0).await?;
    Ok(filing.amount)
}

#[test]
fn an_input_decodes_after_a_field_is_removed() {
    let filing = FilingV1 {
        amount: 64,
        note: "taxi".into(),
    };
    let output = across_deploy(
        (filing_v1, nothing),
        filing,
        (filing_v2, nothing),
        stop_at_once,
    );
    assert_eq!(output.unwrap(), 64);
}

// ---- A real change of type stalls, keeping the turn; a rollback resumes it ----

/// Whether the manager approved, declared once for the orchestrator and its clients.
const APPROVED: EventName<bool> = EventName::new("approved");

#[derive(Debug, Serialize, Deserialize)]
struct ExpenseV1 {
    amount: u64,
}

/// A breaking change: the amount is now text.
#[derive(Debug, Serialize, Deserialize)]
struct ExpenseV2 {
    amount: String,
}

#[orchestrator(name = "expense")]
async fn expense_v1(ctx: OrchestrationContext, expense: ExpenseV1) -> Result<u64, String> {
    let approved = ctx.wait_event(APPROVED).await;
    Ok(if approved { expense.amount } else { 0 })
}

#[orchestrator(name = "expense")]
async fn expense_v2(ctx: OrchestrationContext, expense: ExpenseV2) -> Result<u64, String> {
    let approved = ctx.wait_event(APPROVED).await;
    Ok(if approved {
        expense.amount.len() as u64
    } else {
        0
    })
}

#[test]
fn a_payload_that_no_longer_decodes_stalls_keeping_its_turn_and_a_rollback_resumes_it() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(expense_v1)
            .start()
            .await
            .unwrap();
        let expense = ExpenseV1 { amount: 120 };
        runtime
            .client()
            .start(expense_v1, "e", expense)
            .await
            .unwrap();
        wait_for(&store, "e", |h| !h.is_empty()).await;
    });
    // The breaking deploy: the turn that brings the event stalls, naming the type.
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(expense_v2)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(expense_v2, "e");
        instance.raise_event(APPROVED, &true).await.unwrap();
        let err = instance.wait(WAIT).await.unwrap_err();
        let Error::Stalled { failure, .. } = &err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert!(
            matches!(&failure.kind, FailureKind::Decode { type_name } if type_name.ends_with("ExpenseV2")),
            "{failure:?}"
        );
        assert!(failure.message.contains("ExpenseV2"), "{}", failure.message);
        runtime.shutdown().await;
    });
    let history = store.history("e").unwrap();
    assert!(
        !history
            .iter()
            .any(|e| matches!(e, Event::EventRaised { .. } | Event::Failed { .. })),
        "the stalled turn committed nothing: {history:?}"
    );
    // Rolled back: the instance resumes where it was, with the event the stalled turn
    // kept.
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(expense_v1)
            .start()
            .await
            .unwrap();
        let output = runtime.client().instance(expense_v1, "e").wait(WAIT).await;
        assert_eq!(output.unwrap(), 120);
        runtime.shutdown().await;
    });
}

// ---- A wrongly typed event is set aside; a correct one still arrives ----

#[orchestrator]
async fn awaits_approval(ctx: OrchestrationContext, _: ()) -> Result<bool, String> {
    Ok(ctx.wait_event(APPROVED).await)
}

#[test]
fn a_wrongly_typed_event_is_set_aside_and_the_right_one_still_arrives_after_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(awaits_approval)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let instance = client.start(awaits_approval, "a", ()).await.unwrap();
        // Raised by its plain name, as a client without the shared `EventName` would.
        client.raise_event("a", "approved", &"yes").await.unwrap();
        wait_for(&store, "a", |h| {
            h.iter().any(|e| matches!(e, Event::EventSetAside { .. }))
        })
        .await;
        assert_eq!(instance.status().await.unwrap(), InstanceStatus::Running);
        let set_aside = instance.set_aside_events().await.unwrap();
        assert_eq!(set_aside.len(), 1, "{set_aside:?}");
        assert_eq!(
            (set_aside[0].name.as_str(), set_aside[0].index),
            ("approved", 0)
        );
        assert_eq!(set_aside[0].payload_json().unwrap(), "yes");
        assert!(set_aside[0].reason.contains("`bool`"), "{set_aside:?}");
    });
    // After a restart the history replays (the set-aside event stays aside) and the
    // right event is taken.
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(awaits_approval)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(awaits_approval, "a");
        instance.raise_event(APPROVED, &true).await.unwrap();
        assert!(instance.wait(WAIT).await.unwrap());
        assert_eq!(instance.set_aside_events().await.unwrap().len(), 1);
        runtime.shutdown().await;
    });
}

/// A replay test tells a payload that no longer decodes from a changed path.
#[test]
fn a_replay_test_reports_a_payload_that_no_longer_decodes_naming_the_type() {
    use durable_core::replay_test::{self, ReplayError, SavedHistory};
    let history = SavedHistory {
        instance: "e".into(),
        orchestrator: "expense".into(),
        version: 1,
        events: vec![Event::Started {
            orchestrator: "expense".into(),
            input: serde_json::to_vec(&ExpenseV1 { amount: 120 }).unwrap(),
        }],
    };
    replay_test::replay(expense_v1, &history).unwrap();
    let err = replay_test::replay(expense_v2, &history).unwrap_err();
    assert!(
        matches!(&err, ReplayError::Decode { message, .. } if message.contains("ExpenseV2")),
        "{err:?}"
    );
}

// ---- An activity task queued by v1 whose input v2 cannot read ----

/// The parcel a shipment is for, as v1 names it.
#[derive(Debug, Serialize, Deserialize)]
struct ShipmentV1 {
    parcel: String,
}

/// A breaking edit: the parcel is a number now.
#[derive(Debug, Serialize, Deserialize)]
struct ShipmentV2 {
    parcel: u64,
}

/// Holds the only activity slot until the test lets it go.
#[activity]
async fn hold_slot(ctx: ActivityContext, _: ()) -> Result<(), String> {
    let mut go = ctx.state::<tokio::sync::watch::Receiver<bool>>().clone();
    let _ = go.wait_for(|go| *go).await;
    Ok(())
}

#[activity(name = "ship")]
async fn ship_v1(ctx: ActivityContext, shipment: ShipmentV1) -> Result<String, String> {
    Ok(format!(
        "{} shipped at attempt {}",
        shipment.parcel,
        ctx.attempt()
    ))
}

#[activity(name = "ship")]
async fn ship_v2(_ctx: ActivityContext, shipment: ShipmentV2) -> Result<String, String> {
    Ok(format!("parcel {} shipped", shipment.parcel))
}

/// Ships while `hold_slot` holds the only slot, so `ship` waits for it.
#[orchestrator]
async fn shipping(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let shipment = ShipmentV1 {
        parcel: "p-7".to_string(),
    };
    let (held, shipped) = ctx
        .join2(ctx.call(hold_slot, ()), ctx.call(ship_v1, shipment))
        .await;
    held?;
    Ok(shipped?)
}

/// A task queued by v1 code whose input v2's activity type cannot read stalls its
/// instance, naming the activity and the type, rather than failing the call; the task is
/// kept, unexecuted, and a rollback runs it as its first attempt and the instance finishes.
#[test]
fn an_activity_input_that_does_not_decode_stalls_the_instance_and_a_rollback_runs_it() {
    let (_dir, store) = store();
    let (go, wait) = tokio::sync::watch::channel(false);
    let v1 = || {
        builder(store.clone())
            .orchestrator(shipping)
            .activity(hold_slot)
            .activity(ship_v1)
            .activity_concurrency(1)
            .state(wait.clone())
    };
    lifetime(async {
        let runtime = v1().start().await.unwrap();
        runtime.client().start(shipping, "s", ()).await.unwrap();
        wait_for(&store, "s", |h| {
            h.iter()
                .filter(|e| matches!(e, Event::ActivityScheduled { .. }))
                .count()
                == 2
        })
        .await;
        let stopping = runtime.shutdown();
        tokio::pin!(stopping);
        // Polled once: the runtime stops taking work, then waits for `hold_slot` to end;
        // `ship`, still waiting for the slot, gives up, its task kept.
        tokio::select! {
            biased;
            () = &mut stopping => panic!("shut down while hold_slot still runs"),
            () = std::future::ready(()) => {}
        }
        go.send_replace(true);
        stopping.await;
    });
    // Deployed: the task runs on v2 code, whose input type cannot read it.
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(shipping)
            .activity(hold_slot)
            .activity(ship_v2)
            .activity_concurrency(1)
            .state(wait.clone())
            .start()
            .await
            .unwrap();
        let err = runtime
            .client()
            .instance(shipping, "s")
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Stalled { failure, .. } = &err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert!(
            matches!(&failure.kind, FailureKind::Decode { type_name } if type_name.ends_with("ShipmentV2")),
            "{failure:?}"
        );
        assert!(failure.message.contains("`ship`"), "{}", failure.message);
        assert!(
            failure.message.contains("ShipmentV2"),
            "{}",
            failure.message
        );
        // The worker and the other instances keep running.
        let other = runtime.client().start(chain, "c", 2).await.unwrap();
        assert_eq!(other.wait(WAIT).await.unwrap(), 12);
        runtime.shutdown().await;
    });
    let history = store.history("s").unwrap();
    assert!(
        !history.iter().any(|e| matches!(
            e,
            Event::ActivityFailed { .. } | Event::Failed { .. } | Event::Completed { .. }
        )),
        "the undecodable input failed nothing: {history:?}"
    );
    // Rolled back: the task runs as its first attempt, and the instance finishes.
    lifetime(async {
        let runtime = v1().start().await.unwrap();
        let output = runtime.client().instance(shipping, "s").wait(WAIT).await;
        assert_eq!(output.unwrap(), "p-7 shipped at attempt 1");
        runtime.shutdown().await;
    });
}
