//! The chaos harness: a mixed workload (chains, fan-out, durable timers, external events,
//! sub-orchestrations, retries, continue-as-new, and entity operations: client signals,
//! entity-to-entity and scheduled signals) runs in a child process over a real fjall
//! store, and is SIGKILLed at seeded random moments, K times, restarted after each kill.
//!
//! ```text
//! cargo run --release --example chaos -- --kills K --seed S [--dir DIR]
//! cargo run --release --example chaos -- --store postgres://... --workers W --kills K --seed S
//! ```
//!
//! With `--store`, the run gets a PostgreSQL database of its own on that server (created,
//! and dropped after a clean run), the ledger is a table in it, and W worker processes
//! share the workload: each kill SIGKILLs a random worker, or (one in five) SIGSTOPs one
//! past its lease and resumes it (see `chaos/fleet.rs`).
//!
//! The binary is its own child (re-run with a hidden `--child` flag). After the K kills
//! the child runs once more to the end; then the parent checks that every instance reached
//! its expected final state and output, that the effects ledger (a separate fjall
//! database the activities write under their idempotency keys) holds each effect exactly
//! once, that each external event arrived once, that each entity operation ran exactly
//! once (each entity's state lists the ids of the operations it ran; see
//! `chaos/entities.rs`), and that the store reopens cleanly.
//!
//! Each activity takes a seeded time before and after its effect (`workload::Pace`), as
//! real work does, so kills land between an effect and the commit of its result: the
//! activity is then redelivered and its idempotency key absorbs it. The run counts these
//! redeliveries, and a run of 20 kills or more in which none was absorbed fails: it did
//! not test what it exists for.
//!
//! The last line is `chaos: K kills, N instances, 0 lost, 0 duplicated, A redeliveries
//! absorbed` (exit 0), or the lost, duplicated and unexercised items are listed first and
//! it exits 1. The same seed replays the same kill schedule and activity durations. `DIR` (default: a new directory under the system's temp dir, removed
//! after a clean run) must be empty or absent; it keeps `durable/`, `ledger/`, and the
//! final child's stderr in `final-run.log`.
//!
//! The workload grows with K (K / 25 instances of each pattern, at least 3), and its
//! instances start staggered over the first 60% or so of the kills, so most kills land on
//! running work: 20 kills take about 10 s, 1,000 kills about 7 minutes on 2 cores.

#[path = "chaos/child.rs"]
mod child;
#[path = "chaos/entities.rs"]
mod entities;
#[path = "chaos/fleet.rs"]
mod fleet;
#[path = "chaos/verify.rs"]
mod verify;
#[path = "chaos/workload.rs"]
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "SIGKILLs a durable workload K times and checks nothing was lost or done twice")]
struct Args {
    /// How many times to kill the child.
    #[arg(long, default_value_t = 20)]
    kills: u64,
    /// Seeds the kill schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the store and the ledger live (must be empty or absent).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Instances of each of the 7 patterns [default: kills / 25, at least 3; times the
    /// workers with --store].
    #[arg(long)]
    per_kind: Option<u64>,
    /// Runs on PostgreSQL: the server of this URL (`postgres://user@host:port/db`) gets a
    /// database of the run's own. Without it, the run is on fjall in `--dir`.
    #[arg(long)]
    store: Option<String>,
    /// Worker processes sharing the workload (with `--store` only).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// As the child: which worker this is (0 starts the instances).
    #[arg(long, hide = true)]
    worker: Option<usize>,
    /// Run as the child (used by the parent).
    #[arg(long, hide = true)]
    child: bool,
    /// As the child: stay up once everything settled, until killed.
    #[arg(long, hide = true)]
    serve: bool,
}

/// How long the final, unkilled run may take.
const FINAL_RUN_LIMIT: Duration = Duration::from_secs(600);

/// From this many kills on, a run in which no redelivery was absorbed by an idempotency
/// key fails: its kills never landed between an effect and its commit.
const MIN_KILLS_TO_ABSORB: u64 = 20;

/// The instances of a run with `kills` kills. Instance `n` of each pattern starts its work
/// after `n` staggers, so that starts spread over about the first 60% of the kills (one
/// every ~0.4 s) and most kills land while instances are running.
///
/// A fleet's kills take longer (one in five pauses a worker for seconds), about a second
/// each instead of 0.4 s: its starts spread over `kills × 600 ms`.
fn workload(kills: u64, per_kind: u64, fleet: bool) -> Vec<workload::Spec> {
    let window_ms = if fleet { kills * 600 } else { kills * 240 };
    let stagger_ms = window_ms / per_kind.saturating_sub(1).max(1);
    workload::specs(per_kind, stagger_ms)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A fleet shares the workload: each worker gets about what the single child does.
    let fleet = args.store.is_some();
    let per_kind = args
        .per_kind
        .unwrap_or((args.kills / 25).max(3) * args.workers.max(1) as u64);
    if args.child {
        let Some(dir) = args.dir else {
            eprintln!("chaos: --child needs --dir");
            return ExitCode::from(2);
        };
        let role = child::Role {
            url: args.store,
            starter: args.worker.unwrap_or(0) == 0,
            serve: args.serve,
            lease: fleet::LEASE,
        };
        return run_child(&dir, workload(args.kills, per_kind, fleet), role, args.seed);
    }
    if args.workers > 1 && args.store.is_none() {
        eprintln!("chaos: --workers needs --store postgres://...: a fjall store is one process's");
        return ExitCode::from(2);
    }
    let (dir, temporary) = match args.dir {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!(
                "durable-chaos-{}-{}",
                args.seed,
                std::process::id()
            )),
            true,
        ),
    };
    let run = Run {
        dir: &dir,
        kills: args.kills,
        seed: args.seed,
        per_kind,
        store: args.store.as_deref(),
        workers: args.workers.max(1),
    };
    match run_parent(&run) {
        Ok(true) => {
            if temporary {
                let _ = std::fs::remove_dir_all(&dir);
            }
            ExitCode::SUCCESS
        }
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_child(dir: &Path, specs: Vec<workload::Spec>, role: child::Role, seed: u64) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    match runtime.block_on(child::run(dir, specs, role, seed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos child: {e}");
            ExitCode::FAILURE
        }
    }
}

/// xorshift64*: a small seeded generator, so a kill schedule can be replayed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    /// When to kill: a quarter of the kills land within the first 60 ms (opening the
    /// store, recovering), the rest anywhere in the next 900 ms.
    pub fn kill_delay(&mut self) -> Duration {
        let ms = if self.below(4) == 0 {
            self.below(60)
        } else {
            60 + self.below(900)
        };
        Duration::from_millis(ms)
    }
}

/// One run of the harness, as the parent sees it.
struct Run<'a> {
    dir: &'a Path,
    kills: u64,
    seed: u64,
    per_kind: u64,
    /// The PostgreSQL server (`--store`); `None` for fjall.
    store: Option<&'a str>,
    workers: usize,
}

/// The command of a child over `dir` and, on PostgreSQL, the run's database `url`.
fn child_command(run: &Run, url: Option<&str>) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg("--child")
        .arg("--dir")
        .arg(run.dir)
        .arg("--kills")
        .arg(run.kills.to_string())
        .arg("--seed")
        .arg(run.seed.to_string())
        .arg("--per-kind")
        .arg(run.per_kind.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(url) = url {
        command.arg("--store").arg(url);
    }
    Ok(command)
}

/// Kills, restarts, finishes and verifies; returns whether nothing was lost or duplicated
/// and, from [`MIN_KILLS_TO_ABSORB`] kills on, some redelivery was absorbed.
fn run_parent(run: &Run) -> Result<bool, String> {
    let (dir, kills, seed) = (run.dir, run.kills, run.seed);
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!(
            "`{}` is not empty; give --dir a new or empty directory",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if let Some(server) = run.store {
        return run_fleet(run, server);
    }
    // The ledger stands for the application's database, which exists before the workflows
    // run: it is created here, so no kill lands while fjall creates it.
    drop(workload::Ledger::open(&dir.join("ledger")).map_err(|e| format!("ledger: {e:?}"))?);

    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut while_working = 0;
    for kill in 1..=kills {
        let mut child = child_command(run, None)?
            .arg("--serve")
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the child: {e}"))?;
        std::thread::sleep(rng.kill_delay());
        if !dir.join(child::SETTLED).exists() {
            while_working += 1;
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "the child exited by itself before kill {kill}: {status}"
            ));
        }
        child.kill().map_err(|e| format!("kill {kill}: {e}"))?; // SIGKILL
        child.wait().map_err(|e| format!("kill {kill}: {e}"))?;
        if kill % 100 == 0 {
            println!("chaos: {kill} kills in {:.0?}", started.elapsed());
        }
    }
    println!("chaos: {while_working} of {kills} kills landed before the workload settled");

    let log = dir.join("final-run.log");
    let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = child_command(run, None)?
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let finished = wait_with_limit(child, FINAL_RUN_LIMIT)?;
    if !finished {
        println!(
            "chaos: the final run did not finish (see {}); checking what it left",
            log.display()
        );
    }

    let mut report = verify::verify(dir, None, &workload(kills, run.per_kind, false));
    if !finished {
        report.lost.push(format!(
            "the final run did not finish cleanly (see {})",
            log.display()
        ));
    }
    Ok(conclude(run, &report))
}

/// The run on PostgreSQL with `run.workers` workers (see `chaos/fleet.rs`).
fn run_fleet(run: &Run, server: &str) -> Result<bool, String> {
    let name = format!("durable_chaos_{}_{}", run.seed, std::process::id());
    let database = fleet::RunDatabase::create(server, &name)?;
    workload::create_postgres_ledger(&database.url)?;
    // The schema is created before the first kill, as the ledger is.
    drop(durable_store::PostgresStore::open(&database.url).map_err(|e| e.to_string())?);
    let url = database.url.clone();
    let command = |serve: bool| {
        let mut command = child_command(run, Some(&url))?;
        if serve {
            command.arg("--serve");
        }
        Ok(command)
    };
    let (kills, finished) = fleet::run(run.dir, run.workers, run.kills, run.seed, command)?;
    println!(
        "chaos: {} of {} kills landed before the workload settled; {} workers paused past their lease (they joined again), {} halted and restarted",
        kills.while_working, run.kills, kills.paused, kills.halted
    );
    let mut report = verify::verify(
        run.dir,
        Some(&database.url),
        &workload(run.kills, run.per_kind, true),
    );
    if !finished {
        report
            .lost
            .push("the final phase did not finish in time".to_owned());
    }
    if kills.exited_after_pause > 0 {
        report.lost.push(format!(
            "{} workers paused past their lease exited instead of joining the database again",
            kills.exited_after_pause
        ));
    }
    let clean = conclude(run, &report);
    if clean {
        database.drop_database();
    } else {
        println!("chaos: the run's database {name} is kept");
    }
    Ok(clean)
}

/// Prints what `report` found and the last line; returns whether the run is clean.
fn conclude(run: &Run, report: &verify::Report) -> bool {
    let (dir, kills) = (run.dir, run.kills);
    println!(
        "chaos: {} redeliveries found their effect applied already (idempotency keys absorbed them)",
        report.repeats
    );
    println!(
        "chaos: {} entity operations on {} entities checked (client signals, entity-to-entity and scheduled signals); {} runs resumed sending them after a kill",
        report.entity_ops, report.entities, report.sends_resumed
    );
    for item in &report.lost {
        println!("lost: {item}");
    }
    for item in &report.duplicated {
        println!("duplicated: {item}");
    }
    let unexercised = kills >= MIN_KILLS_TO_ABSORB && report.repeats == 0;
    if unexercised {
        println!(
            "unexercised: no redelivery found its effect applied already in {kills} kills: \
             none landed between an effect and its commit, so the idempotency keys were not tested"
        );
    }
    let clean = report.lost.is_empty() && report.duplicated.is_empty();
    if !clean && run.store.is_none() {
        println!(
            "chaos: the store and the ledger are kept in {}",
            dir.display()
        );
    }
    println!(
        "chaos: {kills} kills, {} instances, {} lost, {} duplicated, {} redeliveries absorbed",
        report.instances,
        report.lost.len(),
        report.duplicated.len(),
        report.repeats
    );
    clean && !unexercised
}

/// Waits for the final run; kills it after `limit`. Returns whether it exited cleanly.
fn wait_with_limit(mut child: Child, limit: Duration) -> Result<bool, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            child.kill().map_err(|e| e.to_string())?;
            child.wait().map_err(|e| e.to_string())?;
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
