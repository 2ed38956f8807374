//! Eternal orchestration: periodic work that runs forever without its history growing.
//! Each generation does one round of work (an activity), sleeps on a durable timer, then
//! ends with `return ctx.continue_as_new(next).await;`, which starts the next generation
//! under the same instance id with a fresh history. This one stops after a set number of
//! generations by returning `Ok`.
//!
//! ```text
//! cargo run --example eternal                          # 20 generations, 50 ms apart
//! cargo run --example eternal -- --generations 200 --period-ms 10
//! ```
//!
//! While it runs, `main` reads the instance's record (`client.record(id)`) and tracks its
//! `generation` and `history_len`. The example checks the final count, that the work ran
//! once per generation, that the record counted every generation, and that the history
//! never held more than two generations' worth of events, however many generations ran,
//! then prints `eternal orchestration: OK` (exit 0); anything else exits 1. The store
//! lives in a fresh temp dir.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Parser;
use durable_core::{
    ActivityContext, FjallStore, OrchestrationContext, Runtime, activity, orchestrator,
};
use serde::{Deserialize, Serialize};

/// How long `main` waits for the instance before calling the run a failure.
const WAIT: Duration = Duration::from_secs(120);
/// The history events one generation of `sweep_forever` writes: started, the activity's
/// scheduling and result, the timer's creation and firing.
const EVENTS_PER_GENERATION: u32 = 5;
/// The most history events the instance may hold at any time: two generations' worth,
/// whatever the number of generations.
const MAX_HISTORY: u32 = 2 * EVENTS_PER_GENERATION;

#[derive(Debug, Parser)]
#[command(about = "Runs periodic work as an eternal orchestration")]
struct Args {
    /// How many generations to run before stopping.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    generations: u32,
    /// The pause between two rounds of work, in milliseconds.
    #[arg(long, default_value_t = 50)]
    period_ms: u64,
}

/// The state carried from one generation to the next: the input of `continue_as_new`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sweeper {
    /// Rounds of work done so far.
    rounds: u32,
    /// Stop after this many rounds.
    stop_after: u32,
    period_ms: u64,
    /// Expired sessions removed so far.
    swept: u64,
}

// ---- The orchestrator ----

#[orchestrator]
async fn sweep_forever(ctx: OrchestrationContext, state: Sweeper) -> Result<Sweeper, String> {
    let swept = ctx.call(sweep_expired_sessions, state.rounds + 1).await?;
    let next = Sweeper {
        rounds: state.rounds + 1,
        swept: state.swept + swept,
        ..state
    };
    ctx.set_custom_status(&next.rounds);
    if next.rounds < next.stop_after {
        ctx.sleep(Duration::from_millis(next.period_ms)).await;
        // Everything this generation did is dropped from the history; `next` carries on.
        return ctx.continue_as_new(next).await;
    }
    Ok(next)
}

// ---- The activity ----

/// Counts executions of the work, to check it ran once per generation.
#[derive(Debug, Default)]
struct Rounds(AtomicU32);

/// How many expired sessions round `round` finds (simulated).
fn expired_in(round: u32) -> u64 {
    u64::from(round % 4)
}

#[activity]
async fn sweep_expired_sessions(ctx: ActivityContext, round: u32) -> Result<u64, String> {
    ctx.state::<Arc<Rounds>>().0.fetch_add(1, Ordering::SeqCst);
    let swept = expired_in(round);
    println!(
        "  round {round:>3}: sessions swept: {swept} (call key {})",
        ctx.idempotency_key()
    );
    Ok(swept)
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
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            println!("FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

/// What `main` saw of the instance's record while it ran.
#[derive(Debug, Default)]
struct Observed {
    reads: u32,
    max_history_len: u32,
    max_generation: u32,
}

async fn run(args: Args) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    println!("store: {}", dir.path().display());
    let rounds = Arc::new(Rounds::default());
    let runtime = Runtime::builder(FjallStore::open(dir.path())?)
        .orchestrator(sweep_forever)
        .activity(sweep_expired_sessions)
        .state(rounds.clone())
        .start()
        .await?;
    let client = runtime.client();
    let first = Sweeper {
        rounds: 0,
        stop_after: args.generations,
        period_ms: args.period_ms,
        swept: 0,
    };

    let id = "session-sweeper";
    let outcome = async {
        let instance = client.start(sweep_forever, id, first).await?;
        println!(
            "started {id}: {} rounds, {} ms apart",
            args.generations, args.period_ms
        );
        let mut observed = Observed::default();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !instance.status().await?.is_settled() {
            if let Some(record) = client.record(id).await? {
                observed.reads += 1;
                observed.max_history_len = observed.max_history_len.max(record.history_len);
                observed.max_generation = observed.max_generation.max(record.generation);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{id} did not finish within {WAIT:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let last = instance.wait(WAIT).await?;
        println!("finished: {last:?}");
        let status = instance.custom_status::<u32>().await?;
        println!("custom status (rounds done): {status:?}");
        if status != Some(last.rounds) {
            return Err(
                format!("the custom status is {status:?}, expected {}", last.rounds).into(),
            );
        }
        let record = client
            .record(id)
            .await?
            .ok_or("the instance's record is gone")?;
        Ok::<_, BoxError>((last, record, observed))
    }
    .await;
    runtime.shutdown().await;
    let (last, record, observed) = outcome?;

    println!(
        "while it ran, {} reads of the record saw generation up to {} and at most {} history events",
        observed.reads, observed.max_generation, observed.max_history_len
    );
    println!(
        "at the end: generation {}, {} history events (one history for all rounds would hold about {})",
        record.generation,
        record.history_len,
        u64::from(args.generations) * u64::from(EVENTS_PER_GENERATION)
    );

    let n = args.generations;
    let swept: u64 = (1..=n).map(expired_in).sum();
    if last.rounds != n || last.swept != swept {
        return Err(format!("expected {n} rounds sweeping {swept} sessions, got {last:?}").into());
    }
    let ran = rounds.0.load(Ordering::SeqCst);
    if ran != n {
        return Err(format!("the work ran {ran} times for {n} generations").into());
    }
    // Generation 0 is the first; each continue-as-new starts the next.
    if record.generation != n - 1 {
        return Err(format!(
            "the record is at generation {}, expected {}",
            record.generation,
            n - 1
        )
        .into());
    }
    let longest = observed.max_history_len.max(record.history_len);
    if longest > MAX_HISTORY {
        return Err(format!(
            "the history reached {longest} events; it should never hold more than {MAX_HISTORY}"
        )
        .into());
    }
    println!("eternal orchestration: OK");
    Ok(())
}
