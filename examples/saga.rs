//! Saga: book a trip as three steps (flight, hotel, car), each an activity with its own
//! undo. The car booking fails, so the orchestrator compensates the steps that succeeded
//! in reverse order (cancel the hotel, then the flight) and fails with a typed error
//! describing what happened. The hotel service is flaky: its first attempt fails and
//! `ctx.call_with_retry` with an exponential policy retries it after a durable timer.
//!
//! ```text
//! cargo run --example saga
//! ```
//!
//! Every booking service appends to a shared log (application state registered with
//! `RuntimeBuilder::state`). The example checks the instance's typed failure and that the
//! log holds the bookings, the retry and the compensations in the right order, then prints
//! `saga compensated in reverse order: OK` (exit 0); anything else exits 1. The store
//! lives in a fresh temp dir. `RUST_LOG=warn` adds the runtime's warnings about the
//! failed activities and the failed instance.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_core::{
    ActivityContext, ActivityError, Error, FjallStore, OrchestrationContext, RetryPolicy, Runtime,
    activity, orchestrator,
};
use serde::{Deserialize, Serialize};

/// How long `main` waits for the instance before calling the run a failure.
const WAIT: Duration = Duration::from_secs(30);

/// The trip to book.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Trip {
    traveller: String,
    destination: String,
}

/// The bookings of a completed trip.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Itinerary {
    flight: String,
    hotel: String,
    car: String,
}

/// The instance's error when a step failed: which step, why, and what was undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TripFailed {
    step: String,
    reason: String,
    compensated: Vec<String>,
}

impl std::fmt::Display for TripFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` failed ({}); undone: {}",
            self.step,
            self.reason,
            self.compensated.join(", ")
        )
    }
}

/// A step that succeeded and how to undo it.
#[derive(Debug)]
enum Undo {
    Flight(String),
    Hotel(String),
}

// ---- The orchestrator ----

#[orchestrator]
async fn book_trip(ctx: OrchestrationContext, trip: Trip) -> Result<Itinerary, TripFailed> {
    let mut done = Vec::new();
    let booked: Result<Itinerary, ActivityError> = async {
        let flight = ctx.call(book_flight, trip.clone()).await?;
        done.push(Undo::Flight(flight.clone()));

        // The hotel service drops requests now and then: retry it, waiting 50 ms, then
        // 100 ms, on durable timers.
        let retry = RetryPolicy::exponential(3, Duration::from_millis(50));
        let hotel = ctx.call_with_retry(book_hotel, trip.clone(), retry).await?;
        done.push(Undo::Hotel(hotel.clone()));

        let car = ctx.call(book_car, trip.clone()).await?;
        Ok(Itinerary { flight, hotel, car })
    }
    .await;

    let failed = match booked {
        Ok(itinerary) => return Ok(itinerary),
        Err(failed) => failed,
    };
    // Undo in reverse order. A compensation must not be given up on, so each is retried.
    let retry = RetryPolicy::fixed(5, Duration::from_millis(50));
    let mut compensated = Vec::new();
    while let Some(undo) = done.pop() {
        let undone = match undo {
            Undo::Hotel(booking) => {
                ctx.call_with_retry(cancel_hotel, booking, retry.clone())
                    .await
            }
            Undo::Flight(booking) => {
                ctx.call_with_retry(cancel_flight, booking, retry.clone())
                    .await
            }
        };
        compensated.push(undone.map_err(|e| TripFailed {
            step: e.activity().to_string(),
            reason: format!("compensation failed: {}", e.message()),
            compensated: compensated.clone(),
        })?);
    }
    Err(TripFailed {
        step: failed.activity().to_string(),
        reason: failed.message().to_string(),
        compensated,
    })
}

// ---- The activities, over simulated booking services ----

/// What the booking services did, in order.
#[derive(Debug, Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, ctx: &ActivityContext, entry: String) {
        println!("  [{}] {entry}", ctx.activity_name());
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn log(ctx: &ActivityContext) -> &Log {
    ctx.state::<Arc<Log>>()
}

#[activity]
async fn book_flight(ctx: ActivityContext, trip: Trip) -> Result<String, String> {
    let booking = "FL-100".to_string();
    log(&ctx).push(
        &ctx,
        format!(
            "booked flight {booking} to {} for {}",
            trip.destination, trip.traveller
        ),
    );
    Ok(booking)
}

#[activity]
async fn book_hotel(ctx: ActivityContext, trip: Trip) -> Result<String, String> {
    if ctx.attempt() == 1 {
        log(&ctx).push(&ctx, "attempt 1: hotel service unavailable".to_string());
        return Err("hotel service unavailable (503)".to_string());
    }
    let booking = "HT-200".to_string();
    log(&ctx).push(
        &ctx,
        format!(
            "attempt {}: booked hotel {booking} in {}",
            ctx.attempt(),
            trip.destination
        ),
    );
    Ok(booking)
}

#[activity]
async fn book_car(ctx: ActivityContext, trip: Trip) -> Result<String, String> {
    log(&ctx).push(&ctx, format!("no cars left in {}", trip.destination));
    Err(format!("no cars available in {}", trip.destination))
}

#[activity]
async fn cancel_hotel(ctx: ActivityContext, booking: String) -> Result<String, String> {
    log(&ctx).push(&ctx, format!("cancelled hotel {booking}"));
    Ok(format!("hotel {booking}"))
}

#[activity]
async fn cancel_flight(ctx: ActivityContext, booking: String) -> Result<String, String> {
    log(&ctx).push(&ctx, format!("cancelled flight {booking}"));
    Ok(format!("flight {booking}"))
}

// ---- The host ----

#[tokio::main]
async fn main() -> ExitCode {
    // The runtime warns about every failed activity and instance; here they are the
    // scenario, so only errors are shown unless RUST_LOG asks for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
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

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    println!("store: {}", dir.path().display());
    let log = Arc::new(Log::default());
    let runtime = Runtime::builder(FjallStore::open(dir.path())?)
        .orchestrator(book_trip)
        .activity(book_flight)
        .activity(book_hotel)
        .activity(book_car)
        .activity(cancel_hotel)
        .activity(cancel_flight)
        .state(log.clone())
        .start()
        .await?;

    let trip = Trip {
        traveller: "Ada".to_string(),
        destination: "Lisbon".to_string(),
    };
    let outcome = async {
        let instance = runtime.client().start(book_trip, "trip-1", trip).await?;
        println!("started instance {}", instance.id());
        instance.wait(WAIT).await
    }
    .await;
    runtime.shutdown().await;

    let error = match outcome {
        Ok(itinerary) => {
            return Err(
                format!("the trip was booked ({itinerary:?}), but the car should fail").into(),
            );
        }
        Err(error @ Error::Failed { .. }) => error,
        Err(error) => return Err(error.into()),
    };
    println!("instance failed as expected: {error}");
    let failed: TripFailed = error
        .orchestrator_error()
        .ok_or("the failure does not hold a `TripFailed`")?;
    let expected = TripFailed {
        step: "book_car".to_string(),
        reason: "no cars available in Lisbon".to_string(),
        compensated: vec!["hotel HT-200".to_string(), "flight FL-100".to_string()],
    };
    if failed != expected {
        return Err(format!("expected {expected:?}, got {failed:?}").into());
    }

    let expected_log = [
        "booked flight FL-100 to Lisbon for Ada",
        "attempt 1: hotel service unavailable",
        "attempt 2: booked hotel HT-200 in Lisbon",
        "no cars left in Lisbon",
        "cancelled hotel HT-200",
        "cancelled flight FL-100",
    ];
    let entries = log.entries();
    if entries != expected_log {
        return Err(
            format!("the services' log is {entries:#?}, expected {expected_log:#?}").into(),
        );
    }
    println!("saga compensated in reverse order: OK");
    Ok(())
}
