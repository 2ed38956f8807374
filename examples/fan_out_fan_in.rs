//! Fan-out / fan-in: an orchestrator gets a work list from an activity, runs one activity
//! per item in parallel, joins them with `ctx.join_all` (results in input order), and
//! aggregates the results with a final activity. It also shows `ctx.join2`, which awaits
//! two calls of different output types together.
//!
//! ```text
//! cargo run --example fan_out_fan_in                 # 1,000 items
//! cargo run --example fan_out_fan_in -- --items 10000
//! ```
//!
//! Each item `i` is squared, so the sum must be `1² + 2² + … + n²`. The example checks that
//! sum, that the results came back in input order, and that every item was processed
//! exactly once, then prints `fan-out / fan-in of N items: OK` (exit 0); anything else
//! exits 1. The store lives in a fresh temp dir. `RUST_LOG=info` shows the runtime's logs.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use durable_core::{
    ActivityContext, ActivityError, FjallStore, OrchestrationContext, Runtime, activity,
    orchestrator,
};
use serde::{Deserialize, Serialize};

/// How long `main` waits for the instance before calling the run a failure.
const WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Parser)]
#[command(about = "Fans out one activity per work item and fans the results back in")]
struct Args {
    /// How many work items to fan out.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    items: u64,
}

/// One item's result. It carries its item so the orchestrator can check the order.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Squared {
    item: u64,
    square: u64,
}

/// What the orchestration returns.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    title: String,
    items: u64,
    sum_of_squares: u64,
}

// ---- The orchestrator ----

#[orchestrator]
async fn fan_out_fan_in(ctx: OrchestrationContext, count: u64) -> Result<Report, String> {
    // Two independent calls with different output types, awaited together.
    let (items, title) = ctx
        .join2(ctx.call(list_work, count), ctx.call(report_title, count))
        .await;
    let (items, title) = (items?, title?);

    // Fan out: every `ctx.call` is scheduled when it is made, so all of them run in
    // parallel (up to the runtime's activity concurrency); then fan in.
    let calls = items
        .iter()
        .map(|&item| ctx.call(square_item, item))
        .collect();
    let results: Vec<Squared> = ctx
        .join_all(calls)
        .await
        .into_iter()
        .collect::<Result<_, ActivityError>>()?;

    // `join_all` returns the outputs in input order, whatever order they finished in.
    if let Some((at, (result, item))) = results
        .iter()
        .zip(&items)
        .enumerate()
        .find(|(_, (result, item))| result.item != **item)
    {
        return Err(format!(
            "result {at} is for item {}, expected item {item}",
            result.item
        ));
    }

    let squares = results.iter().map(|r| r.square).collect();
    let sum_of_squares = ctx.call(sum_squares, squares).await?;
    Ok(Report {
        title,
        items: count,
        sum_of_squares,
    })
}

// ---- The activities ----

/// Records executions of `square_item`, to report progress, to show the order they
/// finished in, and to check that each item ran exactly once.
#[derive(Debug)]
struct Processed {
    done: AtomicU64,
    total: u64,
    finished: Mutex<Vec<u64>>,
}

#[activity]
async fn list_work(_ctx: ActivityContext, count: u64) -> Result<Vec<u64>, String> {
    println!("list_work: {count} items to process");
    Ok((1..=count).collect())
}

#[activity]
async fn report_title(_ctx: ActivityContext, count: u64) -> Result<String, String> {
    println!("report_title: naming the report");
    Ok(format!("sum of the squares of 1..={count}"))
}

#[activity]
async fn square_item(ctx: ActivityContext, item: u64) -> Result<Squared, String> {
    // Items take different times, so they finish out of order.
    tokio::time::sleep(Duration::from_micros(item.wrapping_mul(7_919) % 2_000)).await;
    let processed = ctx.state::<Arc<Processed>>();
    lock(&processed.finished).push(item);
    let done = processed.done.fetch_add(1, Ordering::SeqCst) + 1;
    if done * 10 / processed.total > (done - 1) * 10 / processed.total {
        println!("square_item: {done}/{} items processed", processed.total);
    }
    let square = item
        .checked_mul(item)
        .ok_or_else(|| format!("{item}² overflows a u64"))?;
    Ok(Squared { item, square })
}

#[activity]
async fn sum_squares(_ctx: ActivityContext, squares: Vec<u64>) -> Result<u64, String> {
    println!("sum_squares: adding {} results", squares.len());
    squares
        .iter()
        .try_fold(0u64, |total, &s| total.checked_add(s))
        .ok_or_else(|| "the sum overflows a u64".to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    println!("store: {}", dir.path().display());
    let processed = Arc::new(Processed {
        done: AtomicU64::new(0),
        total: args.items,
        finished: Mutex::default(),
    });
    let runtime = Runtime::builder(FjallStore::open(dir.path())?)
        .orchestrator(fan_out_fan_in)
        .activity(list_work)
        .activity(report_title)
        .activity(square_item)
        .activity(sum_squares)
        .state(processed.clone())
        .start()
        .await?;

    let started = Instant::now();
    let outcome = async {
        let instance = runtime
            .client()
            .start(fan_out_fan_in, "fan-out", args.items)
            .await?;
        println!(
            "started instance {} with {} items",
            instance.id(),
            args.items
        );
        instance.wait(WAIT).await
    }
    .await;
    runtime.shutdown().await;
    let report = outcome?;
    println!(
        "instance finished in {:.2?}: {} = {}",
        started.elapsed(),
        report.title,
        report.sum_of_squares
    );

    let finished = lock(&processed.finished).clone();
    let first: Vec<_> = finished.iter().take(8).collect();
    let order = if finished.is_sorted() {
        "in input order"
    } else {
        "out of order"
    };
    println!(
        "items finished {order} (first to finish: {first:?}); `join_all` returned their results in input order"
    );

    let n = u128::from(args.items);
    let expected = n * (n + 1) * (2 * n + 1) / 6;
    if u128::from(report.sum_of_squares) != expected {
        return Err(format!("the sum is {}, expected {expected}", report.sum_of_squares).into());
    }
    let runs = processed.done.load(Ordering::SeqCst);
    if runs != args.items {
        return Err(format!("`square_item` ran {runs} times for {} items", args.items).into());
    }
    println!("fan-out / fan-in of {} items: OK", args.items);
    Ok(())
}
