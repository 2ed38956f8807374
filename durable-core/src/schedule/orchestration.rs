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
    /// Absent from starts recorded before actions had options: the default.
    #[serde(default)]
    options: StartOptions,
}

/// What a tick's start came to. Untagged, so the `true`/`false` that histories recorded
/// before a start could conflict still decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Started {
    /// The run is the tick's: `true` if this start created it, `false` if it existed
    /// (the start was done before, by this schedule or a deleted one of the same id).
    Run(bool),
    /// The id is held by an instance of another orchestrator: the tick has no run.
    Conflict { existing: String },
}

/// The change id under which a generation records its computed ticks (see
/// [`schedule`]); generations begun before it replay as they ran.
const RECORDED_TICKS: &str = "durable.schedule.recorded-ticks";

/// Retried until the store takes it: a schedule does not fail over a store's hiccup.
fn retry() -> RetryPolicy {
    RetryPolicy::exponential(u32::MAX, Duration::from_secs(1)).max_interval(Duration::from_secs(60))
}

/// A schedule: see the module's docs.
///
/// Replay does not recompute ticks: the wake time and the step taken at the wake (the
/// request applied, the ticks due, what starts) are recorded as side effects, so a
/// generation replayed by a build with another cron parser or tz database (which could
/// place a tick elsewhere) carries on with the ticks it computed; a new generation
/// computes its ticks with the build that runs it.
#[durable_macros::orchestrator(name = "durable.schedule")]
pub(crate) async fn schedule(
    ctx: OrchestrationContext,
    state: ScheduleState,
) -> Result<(), String> {
    let recorded = ctx.patched(RECORDED_TICKS);
    let mut state = state;
    let jitter_ms = match state.schedule.spec.jitter_ms() {
        0 => 0,
        jitter => ctx.random() % jitter,
    };
    let wake = if recorded {
        let now_ms = millis(ctx.now());
        ctx.side_effect(|| state.next_wake_ms(now_ms, jitter_ms))
    } else {
        state.next_wake_ms(millis(ctx.now()), jitter_ms)
    };
    let control = match wake {
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
    let actions = if recorded {
        if control == Some(Control::Delete) {
            return Ok(());
        }
        // A request changes neither the runs nor what they came to: read them first.
        let outcomes = if state.running.is_empty() {
            Vec::new()
        } else {
            ctx.call_with_retry(run_outcomes, state.running.clone(), retry())
                .await
                .map_err(|e| e.to_string())?
        };
        let (next, actions) = ctx.side_effect(|| {
            let mut state = state;
            if let Some(control) = control {
                state.apply(control, now_ms);
            }
            state.observe(outcomes);
            state.take_due(now_ms);
            let actions = state.plan(now_ms);
            (state, actions)
        });
        state = next;
        actions
    } else {
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
        state.plan(now_ms)
    };
    // Ticks whose id another orchestrator's instance holds: not the schedule's runs, so
    // neither terminated nor watched.
    let mut conflicts: Vec<String> = Vec::new();
    for action in actions {
        match action {
            Action::Terminate(mut runs) => {
                runs.retain(|run| !conflicts.contains(run));
                if runs.is_empty() {
                    continue;
                }
                ctx.call_with_retry(terminate_runs, runs, retry())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::Start(tick) => {
                let run = StartRun {
                    run: tick.run.clone(),
                    orchestrator: state.schedule.action.orchestrator().to_string(),
                    version: state.schedule.action.version,
                    input: state.schedule.action.input().clone(),
                    options: *state.schedule.action.start_options(),
                };
                let started = ctx
                    .call_with_retry(start_run, run, retry())
                    .await
                    .map_err(|e| e.to_string())?;
                if let Started::Conflict { .. } = started {
                    state.unstart(&tick.run);
                    conflicts.push(tick.run);
                }
            }
        }
    }
    ctx.continue_as_new(state).await
}

/// Starts a tick's run: see [`Started`].
#[durable_macros::activity(name = "durable.schedule.start")]
pub(crate) async fn start_run(ctx: ActivityContext, run: StartRun) -> Result<Started, String> {
    let input = serde_json::to_vec(&run.input).map_err(|e| e.to_string())?;
    let started = ctx
        .client()
        .start_encoded_with(&run.orchestrator, run.version, &run.run, input, run.options)
        .await;
    match started {
        Ok(new) => Ok(Started::Run(new)),
        Err(crate::error::Error::InstanceConflict { existing, .. }) => {
            tracing::warn!(
                run = %run.run,
                %existing,
                "a schedule's tick has no run: its instance id is held by another orchestrator"
            );
            Ok(Started::Conflict { existing })
        }
        Err(e) => Err(e.to_string()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_recorded_before_conflicts_existed_still_decodes() {
        let old: Started = serde_json::from_str("true").unwrap();
        assert_eq!(old, Started::Run(true));
        let conflict = Started::Conflict {
            existing: "other".into(),
        };
        let json = serde_json::to_string(&conflict).unwrap();
        assert_eq!(serde_json::from_str::<Started>(&json).unwrap(), conflict);
    }

    #[test]
    fn a_start_and_an_action_stored_before_options_existed_decode_with_the_default() {
        let run: StartRun = serde_json::from_str(
            r#"{"run":"s-1970-01-01T00:01:00Z","orchestrator":"job","version":1,"input":null}"#,
        )
        .unwrap();
        assert_eq!(run.options, StartOptions::default());
        let action: crate::schedule::ScheduleAction =
            serde_json::from_str(r#"{"orchestrator":"job","version":1,"input":null}"#).unwrap();
        assert_eq!(*action.start_options(), StartOptions::default());
        let timed = action.options(StartOptions::new().execution_timeout(Duration::from_secs(9)));
        let json = serde_json::to_string(&timed).unwrap();
        let back: crate::schedule::ScheduleAction = serde_json::from_str(&json).unwrap();
        assert_eq!(back, timed);
    }
}
