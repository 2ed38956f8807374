//! Human interaction: approval with a timeout and an escalation. The orchestrator sends
//! an approval request (an activity), then waits for an external event named `approval`
//! on a durable timer (`ctx.timeout(…, ctx.wait_event(APPROVAL))`, the event's name and
//! payload type declared once as an `EventName<Approval>` that `main` raises too). If
//! nobody answers in time it escalates to a second approver (another activity) and waits
//! again; if that wait times out as well, the request is rejected.
//!
//! ```text
//! cargo run --example human_interaction
//! ```
//!
//! Three purchase orders run one after the other (in about a second):
//!
//! 1. the manager does not answer; after the first timeout the orchestrator escalates,
//!    and `main` raises the director's approval with `client.raise_event`;
//! 2. `main` raises the manager's approval right after starting the instance, before the
//!    orchestrator waits for it: the event is kept until the wait takes it;
//! 3. nobody answers: both waits time out and the order is rejected.
//!
//! The example checks each decision and prints `all 3 approval scenarios: OK` (exit 0);
//! anything else exits 1. The store lives in a fresh temp dir.

use std::process::ExitCode;
use std::time::Duration;

use durable_core::record::Event;
use durable_core::{
    ActivityContext, Client, EventName, FjallStore, OrchestrationContext, Runtime, Store, activity,
    orchestrator,
};
use serde::{Deserialize, Serialize};

/// How long `main` waits for an instance before calling the run a failure.
const WAIT: Duration = Duration::from_secs(30);
/// How long each approver has to answer.
const APPROVAL_TIMEOUT: Duration = Duration::from_millis(300);
/// The external event carrying an answer: its name and payload type, for both sides.
const APPROVAL: EventName<Approval> = EventName::new("approval");

/// A purchase order that needs approval.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PurchaseOrder {
    id: String,
    amount: u64,
    manager: String,
    director: String,
    /// How long each approver has to answer, in milliseconds.
    timeout_ms: u64,
}

/// The payload of the `approval` event, raised by a client on behalf of a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Approval {
    approver: String,
    approved: bool,
}

/// What the orchestration decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Decision {
    /// An approver answered.
    Answered { approval: Approval, escalated: bool },
    /// Nobody answered in time, even after the escalation.
    Rejected { reason: String },
}

/// Where the orchestration is, for the client to read as custom status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Stage {
    WaitingForManager,
    WaitingForDirector,
}

/// An approval request sent to a person.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Notice {
    order: String,
    amount: u64,
    to: String,
}

// ---- The orchestrator ----

#[orchestrator]
async fn approve_purchase(
    ctx: OrchestrationContext,
    order: PurchaseOrder,
) -> Result<Decision, String> {
    let timeout = Duration::from_millis(order.timeout_ms);
    let notice = |to: &str| Notice {
        order: order.id.clone(),
        amount: order.amount,
        to: to.to_string(),
    };

    ctx.call(send_approval_request, notice(&order.manager))
        .await?;
    ctx.set_custom_status(&Stage::WaitingForManager);
    // The timeout is a durable timer: it survives a restart and never fires early.
    if let Ok(approval) = ctx.timeout(timeout, ctx.wait_event(APPROVAL)).await {
        return Ok(Decision::Answered {
            approval,
            escalated: false,
        });
    }

    ctx.call(escalate, notice(&order.director)).await?;
    ctx.set_custom_status(&Stage::WaitingForDirector);
    match ctx.timeout(timeout, ctx.wait_event(APPROVAL)).await {
        Ok(approval) => Ok(Decision::Answered {
            approval,
            escalated: true,
        }),
        Err(timeout) => Ok(Decision::Rejected {
            reason: format!(
                "neither {} nor {} answered: {timeout}",
                order.manager, order.director
            ),
        }),
    }
}

// ---- The activities ----

#[activity]
async fn send_approval_request(ctx: ActivityContext, notice: Notice) -> Result<(), String> {
    // Sending an e-mail takes a moment; an answer may arrive before the orchestrator waits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!(
        "  [{}] asked {} to approve {} (${})",
        ctx.instance_id(),
        notice.to,
        notice.order,
        notice.amount
    );
    Ok(())
}

#[activity]
async fn escalate(ctx: ActivityContext, notice: Notice) -> Result<(), String> {
    println!(
        "  [{}] no answer in time; escalated {} to {}",
        ctx.instance_id(),
        notice.order,
        notice.to
    );
    Ok(())
}

// ---- The host ----

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            println!("FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

async fn run() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    println!("store: {}", dir.path().display());
    let store = FjallStore::open(dir.path())?;
    let runtime = Runtime::builder(store.clone())
        .orchestrator(approve_purchase)
        .activity(send_approval_request)
        .activity(escalate)
        .start()
        .await?;
    let client = runtime.client();
    let outcome = scenarios(&client, &store).await;
    runtime.shutdown().await;
    outcome?;
    println!("all 3 approval scenarios: OK");
    Ok(())
}

fn order(id: &str, amount: u64) -> PurchaseOrder {
    PurchaseOrder {
        id: id.to_string(),
        amount,
        manager: "Maria (manager)".to_string(),
        director: "Dev (director)".to_string(),
        timeout_ms: APPROVAL_TIMEOUT.as_millis() as u64,
    }
}

async fn scenarios(client: &Client, store: &FjallStore) -> Result<(), BoxError> {
    println!("\n1. the manager does not answer; the director approves after the escalation");
    let instance = client
        .start(approve_purchase, "po-1", order("PO-1", 12_000))
        .await?;
    // Wait until the orchestrator has escalated: the first timeout has elapsed by then.
    wait_for_stage(&instance, Stage::WaitingForDirector).await?;
    let director = Approval {
        approver: "Dev (director)".to_string(),
        approved: true,
    };
    println!("  [main] the director approves: raising `{APPROVAL}` to po-1");
    client.raise_event("po-1", APPROVAL, &director).await?;
    let decision = instance.wait(WAIT).await?;
    println!("  [main] decision: {decision:?}");
    expect(
        &decision,
        &Decision::Answered {
            approval: director,
            escalated: true,
        },
    )?;

    println!("\n2. the manager approves before the orchestrator starts waiting");
    let instance = client
        .start(approve_purchase, "po-2", order("PO-2", 800))
        .await?;
    let manager = Approval {
        approver: "Maria (manager)".to_string(),
        approved: true,
    };
    println!("  [main] the manager approves at once: raising `{APPROVAL}` to po-2");
    instance.raise_event(APPROVAL, &manager).await?;
    let decision = instance.wait(WAIT).await?;
    println!("  [main] decision: {decision:?}");
    expect(
        &decision,
        &Decision::Answered {
            approval: manager,
            escalated: false,
        },
    )?;
    // The history shows the order: the event was recorded before the wait's timer.
    let history = store.history("po-2")?;
    let raised = history
        .iter()
        .position(|e| matches!(e, Event::EventRaised { .. }));
    let waited = history
        .iter()
        .position(|e| matches!(e, Event::TimerCreated { .. }));
    match (raised, waited) {
        (Some(raised), Some(waited)) if raised < waited => println!(
            "  [main] po-2 history: event recorded at position {raised}, the wait began at {waited}"
        ),
        _ => {
            return Err(format!(
                "po-2: expected the event before the wait in the history, got {history:?}"
            )
            .into());
        }
    }

    println!("\n3. nobody answers");
    let instance = client
        .start(approve_purchase, "po-3", order("PO-3", 99_000))
        .await?;
    let decision = instance.wait(WAIT).await?;
    println!("  [main] decision: {decision:?}");
    if !matches!(decision, Decision::Rejected { .. }) {
        return Err(format!("po-3: expected a rejection, got {decision:?}").into());
    }
    Ok(())
}

/// Polls the instance's custom status until it reports `stage`.
async fn wait_for_stage(
    instance: &durable_core::Instance<approve_purchase>,
    stage: Stage,
) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if instance.custom_status::<Stage>().await? == Some(stage) {
            println!("  [main] {} reports {stage:?}", instance.id());
            return Ok(());
        }
        if instance.status().await?.is_settled() {
            return Err(format!("{} finished before reaching {stage:?}", instance.id()).into());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{} did not reach {stage:?}", instance.id()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn expect(decision: &Decision, expected: &Decision) -> Result<(), BoxError> {
    if decision == expected {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {decision:?}").into())
    }
}
