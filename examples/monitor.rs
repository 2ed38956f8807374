//! Monitor: poll an external job's status with an activity, sleeping on a durable timer
//! between polls, until the job is done or an expiry (computed from `ctx.now()`, so every
//! replay sees the same deadline) has passed. The orchestrator publishes its poll count
//! with `ctx.set_custom_status`, which `main` reads with `instance.custom_status()` while
//! the instance runs.
//!
//! ```text
//! cargo run --example monitor
//! ```
//!
//! Two monitors run one after the other (about a second in all): `build-1` becomes done on
//! its 4th poll; `build-2` never does and its monitor gives up at its expiry. The job
//! service is simulated in memory (application state registered with
//! `RuntimeBuilder::state`). The example checks both outcomes and that `main` saw the poll
//! count while each instance ran, then prints `both monitors: OK` (exit 0); anything else
//! exits 1. The store lives in a fresh temp dir.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_core::{
    ActivityContext, Client, FjallStore, OrchestrationContext, Runtime, activity, orchestrator,
};
use serde::{Deserialize, Serialize};

/// How long `main` waits for an instance before calling the run a failure.
const WAIT: Duration = Duration::from_secs(30);

/// What a monitor watches, and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Watch {
    job: String,
    /// The wait between two polls, in milliseconds.
    interval_ms: u64,
    /// How long to keep polling, in milliseconds from the start.
    expire_after_ms: u64,
}

/// A job's status, as the job service reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum JobStatus {
    Running,
    Done,
}

/// The monitor's custom status: how many polls so far and what the last one said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    polls: u32,
    last: JobStatus,
}

/// How the monitor ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Outcome {
    Done { polls: u32 },
    Expired { polls: u32 },
}

// ---- The orchestrator ----

#[orchestrator]
async fn monitor_job(ctx: OrchestrationContext, watch: Watch) -> Result<Outcome, String> {
    let interval = Duration::from_millis(watch.interval_ms);
    let expiry = ctx.now() + Duration::from_millis(watch.expire_after_ms);
    let mut polls = 0;
    loop {
        let last = ctx.call(check_job, watch.job.clone()).await?;
        polls += 1;
        ctx.set_custom_status(&Progress { polls, last });
        if last == JobStatus::Done {
            ctx.call(notify, format!("{} is done", watch.job)).await?;
            return Ok(Outcome::Done { polls });
        }
        if ctx.now() + interval > expiry {
            ctx.call(
                notify,
                format!("gave up on {} after {polls} polls", watch.job),
            )
            .await?;
            return Ok(Outcome::Expired { polls });
        }
        // A durable timer: a monitor that sleeps for hours survives restarts. (One that
        // polls for days would `continue_as_new` now and then to keep its history short.)
        ctx.sleep(interval).await;
    }
}

// ---- The activities, over a simulated job service ----

/// The simulated job service: how many polls each job needs to be done, and how many it
/// has had.
#[derive(Debug, Default)]
struct JobService {
    polls_to_done: BTreeMap<String, u32>,
    polls: Mutex<BTreeMap<String, u32>>,
}

#[activity]
async fn check_job(ctx: ActivityContext, job: String) -> Result<JobStatus, String> {
    let service = ctx.state::<Arc<JobService>>();
    let needed = *service
        .polls_to_done
        .get(&job)
        .ok_or_else(|| format!("no job called {job}"))?;
    let mut polls = service.polls.lock().unwrap_or_else(|p| p.into_inner());
    let poll = polls.entry(job.clone()).or_default();
    *poll += 1;
    let status = if *poll >= needed {
        JobStatus::Done
    } else {
        JobStatus::Running
    };
    println!("  [{}] poll {poll}: {job} is {status:?}", ctx.instance_id());
    Ok(status)
}

#[activity]
async fn notify(ctx: ActivityContext, message: String) -> Result<(), String> {
    println!("  [{}] notify: {message}", ctx.instance_id());
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
    let service = Arc::new(JobService {
        polls_to_done: BTreeMap::from([("build-1".to_string(), 4), ("build-2".to_string(), 1_000)]),
        polls: Mutex::default(),
    });
    let runtime = Runtime::builder(FjallStore::open(dir.path())?)
        .orchestrator(monitor_job)
        .activity(check_job)
        .activity(notify)
        .state(service)
        .start()
        .await?;
    let client = runtime.client();
    let outcome = scenarios(&client).await;
    runtime.shutdown().await;
    outcome?;
    println!("both monitors: OK");
    Ok(())
}

async fn scenarios(client: &Client) -> Result<(), BoxError> {
    println!("\n1. build-1 finishes on its 4th poll (polls every 100 ms, expires after 5 s)");
    let watch = Watch {
        job: "build-1".to_string(),
        interval_ms: 100,
        expire_after_ms: 5_000,
    };
    let outcome = monitor(client, "monitor-1", watch).await?;
    if outcome != (Outcome::Done { polls: 4 }) {
        return Err(format!("monitor-1: expected Done after 4 polls, got {outcome:?}").into());
    }

    println!("\n2. build-2 never finishes (polls every 100 ms, expires after 500 ms)");
    let watch = Watch {
        job: "build-2".to_string(),
        interval_ms: 100,
        expire_after_ms: 500,
    };
    let outcome = monitor(client, "monitor-2", watch).await?;
    // Polls at about 0, 100, ..., 400 ms; the next would come after the expiry. Timers
    // fire late, never early, so there may be fewer.
    match outcome {
        Outcome::Expired { polls } if (2..=5).contains(&polls) => Ok(()),
        _ => Err(format!("monitor-2: expected Expired after 2 to 5 polls, got {outcome:?}").into()),
    }
}

/// Starts a monitor, prints its custom status whenever it changes while it runs, and
/// returns its outcome.
async fn monitor(client: &Client, id: &str, watch: Watch) -> Result<Outcome, BoxError> {
    let instance = client.start(monitor_job, id, watch).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen: Option<Progress> = None;
    let mut seen_while_running = 0;
    loop {
        let status = instance.status().await?;
        if status.is_settled() {
            break;
        }
        let progress = instance.custom_status::<Progress>().await?;
        if let Some(p) = progress
            && progress != seen
        {
            // Read after a status that was not settled: the instance was running.
            seen_while_running += 1;
            println!("  [main] {id} is running; custom status: {p:?}");
            seen = progress;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{id} did not finish within {WAIT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = instance.wait(WAIT).await?;
    println!("  [main] {id} finished: {outcome:?}");
    if seen_while_running == 0 {
        return Err(format!("{id}: no custom status was seen while it ran").into());
    }
    Ok(outcome)
}
