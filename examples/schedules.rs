//! Schedules through a simulated week, checked run by run.
//!
//! ```text
//! cargo run --release --example schedules
//! ```
//!
//! A runtime on a time-skipping `ManualClock` (it jumps to the next timer whenever there
//! is nothing else to do) and a fjall store in a temp dir runs, from Wednesday 25 March
//! 2026 00:00 UTC to Wednesday 1 April 00:05 UTC, a week across the change to summer
//! time in Europe (Sunday 29 March):
//!
//! - `standup`: weekdays at 09:00 in `Europe/Berlin` (08:00 UTC before the change, 07:00
//!   after), and a backfill of the week before the schedule existed;
//! - `sync`: every 15 minutes, overlap policy skip; each run sleeps 3.5 to 35.5 minutes
//!   (a duration derived from its instance id), so some outlast the interval and the ticks
//!   that find them running start nothing; paused on Saturday 12:05 UTC with a note and
//!   unpaused on Sunday 06:05.
//!
//! Then it works out, without the schedule code (the offsets of Berlin's zone for the
//! week are written out here, the skips simulated), which runs each schedule should have
//! started (their instance ids, and for the scheduled ones their start times), compares
//! them with the instances the store holds, and prints `schedules: all runs as expected`
//! (exit 0) or each difference (exit 1).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::schedule::{
    OverlapPolicy, Schedule, ScheduleAction, ScheduleHandle, ScheduleSpec, run_id,
};
use durable_core::{
    Clock, Durability, FjallStore, ManualClock, OrchestrationContext, Runtime, Store, orchestrator,
};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// Wednesday 25 March 2026, 00:00 UTC.
const START: u64 = 1_774_396_800;
/// Sunday 29 March 2026, 01:00 UTC: Berlin moves from UTC+1 to UTC+2.
const SUMMER_TIME: u64 = START + 4 * DAY + HOUR;
/// Wednesday 1 April 2026, 00:05 UTC (off any tick, so the last one is not a race).
const END: u64 = START + 7 * DAY + 5 * MINUTE;
/// `sync` is paused (Saturday 12:05 UTC) and unpaused (Sunday 06:05 UTC).
const PAUSE: u64 = START + 3 * DAY + 12 * HOUR + 5 * MINUTE;
const UNPAUSE: u64 = START + 4 * DAY + 6 * HOUR + 5 * MINUTE;
/// The backfill of `standup`: the week before it existed.
const BACKFILL_FROM: u64 = START - 7 * DAY;
/// Real time the example gives the runtime to act on a request.
const WAIT: Duration = Duration::from_secs(30);

/// The stand-up report: nothing to do but exist.
#[orchestrator]
async fn standup_report(_ctx: OrchestrationContext, team: String) -> Result<String, String> {
    Ok(team)
}

/// A sync that takes a while: sleeps the duration its instance id gives.
#[orchestrator]
async fn sync(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let seconds = sync_seconds(ctx.instance_id());
    ctx.sleep(Duration::from_secs(seconds)).await;
    Ok(seconds)
}

/// How long run `id` of `sync` takes: 3.5, 7.5, 11.5, 20.5 or 35.5 minutes, never a
/// multiple of the 15-minute interval (its end never falls on a tick).
fn sync_seconds(id: &str) -> u64 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    [3, 7, 11, 20, 35][(hash % 5) as usize] * MINUTE + 30
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Weekdays at 09:00 in Berlin, worked out by hand: the offset is +1 h before
/// [`SUMMER_TIME`] and +2 h after (true of the two weeks the example covers).
fn weekday_nines(from: u64, to: u64) -> Vec<u64> {
    let mut ticks = Vec::new();
    let mut day = from - from % DAY;
    while day < to {
        // 1 January 1970 was a Thursday: day 0 is weekday 4 (0 = Sunday).
        let weekday = (day / DAY + 4) % 7;
        let offset = if day + 9 * HOUR - HOUR >= SUMMER_TIME {
            2 * HOUR
        } else {
            HOUR
        };
        let tick = day + 9 * HOUR - offset;
        if (1..=5).contains(&weekday) && tick > from && tick < to {
            ticks.push(tick);
        }
        day += DAY;
    }
    ticks
}

/// What `sync` should have started: each quarter hour after [`START`], unless paused
/// then, or the run before still runs (overlap skip). Returns the runs (id and start) and
/// the number of skipped ticks.
fn expected_syncs() -> (BTreeMap<String, u64>, u64) {
    let mut runs = BTreeMap::new();
    let mut skipped = 0;
    let mut running_until = 0;
    let mut tick = START + 15 * MINUTE;
    while tick < END {
        let paused = tick > PAUSE && tick <= UNPAUSE;
        if !paused {
            if running_until > tick {
                skipped += 1;
            } else {
                let id = run_id("sync", at(tick));
                running_until = tick + sync_seconds(&id);
                runs.insert(id, tick);
            }
        }
        tick += 15 * MINUTE;
    }
    (runs, skipped)
}

/// Lets the clock run to `time`, then holds it there while `act` runs.
async fn at_time<F: std::future::Future<Output = ()>>(clock: &ManualClock, time: u64, act: F) {
    hold_at(clock, time).await;
    act.await;
    clock.work_done();
}

/// Lets the clock run to `time`, then holds it there until `clock.work_done()`.
async fn hold_at(clock: &ManualClock, time: u64) {
    let mut arrived = clock.sleep_until(at(time));
    (&mut arrived).await;
    // Held before the fired sleep is let go: a skipping clock would jump on at once.
    clock.work_began();
    drop(arrived);
}

/// Polls until `check` holds; a failure to hold is reported as a difference.
async fn until(handle: &ScheduleHandle, check: impl Fn(&Option<String>) -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(d) = handle.describe(0).await
            && check(&d.paused)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(differences) if differences.is_empty() => {
            println!("schedules: all runs as expected");
            ExitCode::SUCCESS
        }
        Ok(differences) => {
            for difference in differences {
                println!("difference: {difference}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("schedules: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // Without an fsync per commit: a simulated week of commits in seconds (the crash
    // tests cover durability).
    let store = FjallStore::open_with(dir.path(), Durability::Buffered)?;
    let clock = ManualClock::time_skipping(at(START));
    let runtime = Runtime::builder(store.clone())
        .schedules()
        .orchestrator(standup_report)
        .orchestrator(sync)
        .clock(clock.clone())
        .start()
        .await?;
    let client = runtime.client();
    let mut differences = Vec::new();

    let started = std::time::Instant::now();
    clock.work_began();
    let standup = ScheduleSpec::cron_in("0 0 9 * * MON-FRI", "Europe/Berlin")?;
    let action = ScheduleAction::start(standup_report, "platform".to_string())?;
    let standup = client
        .create_schedule("standup", Schedule::new(standup, action))
        .await?;
    let every_15 = ScheduleSpec::every(Duration::from_secs(15 * MINUTE))?;
    let action = ScheduleAction::start(sync, ())?;
    let syncs = Schedule::new(every_15, action).overlap(OverlapPolicy::Skip);
    let syncs = client.create_schedule("sync", syncs).await?;
    standup
        .backfill(at(BACKFILL_FROM), at(START), OverlapPolicy::AllowAll)
        .await?;
    clock.work_done();

    at_time(&clock, PAUSE, async {
        syncs.pause("weekend maintenance").await.ok();
        if !until(&syncs, |p| p.as_deref() == Some("weekend maintenance")).await {
            differences.push("sync was not paused".to_string());
        }
    })
    .await;
    at_time(&clock, UNPAUSE, async {
        syncs.unpause().await.ok();
        if !until(&syncs, Option::is_none).await {
            differences.push("sync was not unpaused".to_string());
        }
    })
    .await;
    // Held at the end (until the runtime shuts down), so nothing after it ticks.
    hold_at(&clock, END).await;

    // What the store holds.
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    for (id, record) in store.instances()? {
        if id.starts_with("standup-") || id.starts_with("sync-") {
            held.insert(id, record.created_ms / 1000);
        }
    }
    // What the policies say.
    let (expected_syncs, expected_skips) = expected_syncs();
    let mut expected: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for tick in weekday_nines(START, END) {
        expected.insert(run_id("standup", at(tick)), Some(tick));
    }
    for tick in weekday_nines(BACKFILL_FROM, START) {
        // A backfilled run starts when the backfill is handled, not at its tick.
        expected.insert(run_id("standup", at(tick)), None);
    }
    for (id, tick) in expected_syncs {
        expected.insert(id, Some(tick));
    }
    for (id, start) in &expected {
        match (held.get(id), start) {
            (None, _) => differences.push(format!("run {id} expected, not in the store")),
            (Some(&created), Some(start)) if created != *start => differences.push(format!(
                "run {id} started at {created}, expected at {start} (seconds since the epoch)"
            )),
            _ => {}
        }
    }
    for id in held.keys().filter(|id| !expected.contains_key(*id)) {
        differences.push(format!("run {id} in the store, not expected"));
    }
    let described = syncs.describe(0).await?;
    if described.skipped != expected_skips {
        differences.push(format!(
            "sync skipped {} ticks, expected {expected_skips}",
            described.skipped
        ));
    }
    let summer = weekday_nines(START, END);
    println!(
        "schedules: {} runs in a simulated week ({} standups, the last two an hour earlier in UTC: {}; {} sync ticks skipped) in {:.1?}",
        held.len(),
        summer.len(),
        summer
            .iter()
            .map(|t| run_id("standup", at(*t)))
            .collect::<Vec<_>>()
            .join(", "),
        described.skipped,
        started.elapsed()
    );
    runtime.shutdown().await;
    clock.work_done();
    Ok(differences)
}
