//! The built-in orchestrator every schedule runs as, and the activities through which it
//! starts, reads and terminates its runs.
//!
//! One generation is one wake: wait for the next tick (plus jitter) or a request; apply
//! the request; read what the running runs have come to; take the due ticks (the
//! catch-up window decides which run); decide per overlap policy what starts; start it;
//! continue as new with the state. A worker killed anywhere in it resumes the generation
//! from its history, and a start done twice finds the run's instance there: one instance
//! per tick.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::activity_context::ActivityContext;
use crate::client::start_options::StartOptions;
use crate::join::Either;
use crate::orchestration_context::OrchestrationContext;
use crate::retry::RetryPolicy;
use crate::runtime::RuntimeBuilder;
use crate::schedule::spec::millis;
use crate::schedule::state::{Action, Control, RunOutcome, ScheduleState};

/// The event name a schedule's requests are raised under.
pub(crate) const CONTROL_EVENT: &str = "durable.schedule.control";

/// Registers the orchestrator and its activities.
pub(super) fn register(builder: RuntimeBuilder) -> RuntimeBuilder {
    builder
        .orchestrator(schedule)
        .activity(start_run)
        .activity(run_outcomes)
        .activity(terminate_runs)
}

/// A run to start: the action of the schedule, under the tick's instance id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StartRun {
    run: String,
    orchestrator: String,
    version: u32,
    input: serde_json::Value,
}

/// Retried until the store takes it: a schedule does not fail over a store's hiccup.
fn retry() -> RetryPolicy {
    RetryPolicy::exponential(u32::MAX, Duration::from_secs(1)).max_interval(Duration::from_secs(60))
}

/// A schedule: see the module's docs.
#[durable_macros::orchestrator(name = "durable.schedule")]
pub(crate) async fn schedule(
    ctx: OrchestrationContext,
    state: ScheduleState,
) -> Result<(), String> {
    let mut state = state;
    let jitter_ms = match state.schedule.spec.jitter_ms() {
        0 => 0,
        jitter => ctx.random() % jitter,
    };
    let control = match state.next_wake_ms(millis(ctx.now()), jitter_ms) {
        Some(wake) => {
            let timer = ctx.sleep_until(std::time::UNIX_EPOCH + Duration::from_millis(wake));
            match ctx
                .select2(timer, ctx.wait_event::<Control>(CONTROL_EVENT))
                .await
            {
                Either::Left(()) => None,
                Either::Right(control) => Some(control),
            }
        }
        None => Some(ctx.wait_event::<Control>(CONTROL_EVENT).await),
    };
    let now_ms = millis(ctx.now());
    if let Some(control) = control
        && state.apply(control, now_ms)
    {
        return Ok(());
    }
    if !state.running.is_empty() {
        let outcomes = ctx
            .call_with_retry(run_outcomes, state.running.clone(), retry())
            .await
            .map_err(|e| e.to_string())?;
        state.observe(outcomes);
    }
    state.take_due(now_ms);
    for action in state.plan(now_ms) {
        match action {
            Action::Terminate(runs) => {
                ctx.call_with_retry(terminate_runs, runs, retry())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::Start(tick) => {
                let run = StartRun {
                    run: tick.run,
                    orchestrator: state.schedule.action.orchestrator().to_string(),
                    version: state.schedule.action.version,
                    input: state.schedule.action.input().clone(),
                };
                ctx.call_with_retry(start_run, run, retry())
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    ctx.continue_as_new(state).await
}

/// Starts a tick's run; `false` if its instance existed (this start was done before).
#[durable_macros::activity(name = "durable.schedule.start")]
pub(crate) async fn start_run(ctx: ActivityContext, run: StartRun) -> Result<bool, String> {
    let input = serde_json::to_vec(&run.input).map_err(|e| e.to_string())?;
    ctx.client()
        .start_encoded_with(
            &run.orchestrator,
            run.version,
            &run.run,
            input,
            StartOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())
}

/// What each run has come to.
#[durable_macros::activity(name = "durable.schedule.outcomes")]
pub(crate) async fn run_outcomes(
    ctx: ActivityContext,
    runs: Vec<String>,
) -> Result<Vec<(String, RunOutcome)>, String> {
    let client = ctx.client();
    let mut outcomes = Vec::with_capacity(runs.len());
    for run in runs {
        let record = client.record(&run).await.map_err(|e| e.to_string())?;
        let outcome = match record.map(|r| r.status) {
            None
            | Some(durable_store::Status::Completed { .. })
            | Some(durable_store::Status::Terminated { .. }) => RunOutcome::Ended,
            Some(durable_store::Status::Failed { failure }) => RunOutcome::Failed(failure.message),
            Some(_) => RunOutcome::Running,
        };
        outcomes.push((run, outcome));
    }
    Ok(outcomes)
}

/// Terminates the runs (an overlap policy of `TerminateOther`); one already finished is
/// left as it is.
#[durable_macros::activity(name = "durable.schedule.terminate")]
pub(crate) async fn terminate_runs(ctx: ActivityContext, runs: Vec<String>) -> Result<(), String> {
    let client = ctx.client();
    for run in runs {
        match client
            .terminate(
                &run,
                "terminated by its schedule (overlap policy TerminateOther)",
            )
            .await
        {
            Ok(()) | Err(crate::error::Error::InvalidState { .. }) => {}
            Err(crate::error::Error::InstanceNotFound(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
