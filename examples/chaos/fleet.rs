//! The parent's run on PostgreSQL with several worker processes (`--store URL --workers
//! W`): the run gets a database of its own on that server; W children share its
//! workload, worker 0 starting the instances. Each kill SIGKILLs a random worker and
//! starts it again; one kill in five instead SIGSTOPs a worker for longer than its lease,
//! while the others take its work over, then SIGCONTs it: it must write nothing stale
//! (the ledger and the histories the parent checks say so), and its runtime, finding its
//! lease lapsed, joins the database again as a new worker and goes on working: it must
//! not exit. After the K kills the workers run on until worker 0 sees every instance
//! settled.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Rng;

/// A worker's lease in the fleet: short, so the work of a killed worker is taken over
/// within seconds.
pub const LEASE: Duration = Duration::from_secs(2);

/// How long the final phase may take.
const FINAL_LIMIT: Duration = Duration::from_secs(600);

/// The run's database, made on the server of `url` and named for the run.
pub struct RunDatabase {
    /// The URL of the server's maintenance database, as given.
    admin: String,
    name: String,
    /// The URL of the run's database.
    pub url: String,
}

impl RunDatabase {
    /// Creates database `name` on the server of `url`.
    pub fn create(url: &str, name: &str) -> Result<Self, String> {
        let run_url = with_database(url, name)?;
        let mut client = postgres::Client::connect(url, postgres::NoTls)
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        Ok(Self {
            admin: url.to_owned(),
            name: name.to_owned(),
            url: run_url,
        })
    }

    /// Drops the run's database (after a clean run).
    pub fn drop_database(&self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// `url` with its database replaced by `name`: `postgres://user@host:port/db?x` becomes
/// `postgres://user@host:port/name?x`.
fn with_database(url: &str, name: &str) -> Result<String, String> {
    let scheme_end = url
        .find("://")
        .ok_or_else(|| format!("`{url}` is not a postgres:// URL"))?
        + 3;
    let rest = &url[scheme_end..];
    let (authority, query) = match rest.find(['/', '?']) {
        Some(i) => {
            let after = &rest[i..];
            let query = after.find('?').map_or("", |q| &after[q..]);
            (&rest[..i], query)
        }
        None => (rest, ""),
    };
    Ok(format!("{}{authority}/{name}{query}", &url[..scheme_end]))
}

/// One worker process.
struct Worker {
    index: usize,
    child: Child,
    /// Whether it was paused past its lease since it started.
    paused: bool,
}

/// Starts worker `index` with `command`.
fn spawn(mut command: Command, index: usize) -> Result<Worker, String> {
    let child = command
        .arg("--worker")
        .arg(index.to_string())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start worker {index}: {e}"))?;
    Ok(Worker {
        index,
        child,
        paused: false,
    })
}

/// What the kills did.
#[derive(Debug, Default)]
pub struct Kills {
    /// Kills that landed before worker 0 saw everything settled.
    pub while_working: u64,
    /// Workers stopped past their lease and resumed.
    pub paused: u64,
    /// Workers that exited by themselves (a runtime halts only on a store that refuses
    /// every write for good) and were started again.
    pub halted: u64,
    /// Of those, the workers that had been paused past their lease: they were to join
    /// the database again and go on, and did not. The run fails if there is one.
    pub exited_after_pause: u64,
}

/// Runs `workers` workers (made by `command(serve)`), kills them `kills` times as the
/// module says, then lets them run until worker 0 settles everything and exits. Returns
/// what the kills did and whether the final phase finished.
pub fn run(
    dir: &Path,
    workers: usize,
    kills: u64,
    seed: u64,
    command: impl Fn(bool) -> Result<Command, String>,
) -> Result<(Kills, bool), String> {
    let mut rng = Rng::new(seed);
    let mut report = Kills::default();
    let mut fleet = (0..workers)
        .map(|i| spawn(command(true)?, i))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    for kill in 1..=kills {
        std::thread::sleep(rng.kill_delay());
        restart_exited(&mut fleet, &command, &mut report, true)?;
        if !dir.join(crate::child::SETTLED).exists() {
            report.while_working += 1;
        }
        let victim = rng.below(workers as u64) as usize;
        let pid = fleet[victim].child.id().to_string();
        if rng.below(5) == 0 {
            // Frozen past its lease: the others take its work over meanwhile.
            signal("-STOP", &pid)?;
            std::thread::sleep(LEASE + Duration::from_millis(500 + rng.below(1000)));
            signal("-CONT", &pid)?;
            fleet[victim].paused = true;
            report.paused += 1;
        } else {
            let worker = &mut fleet[victim];
            worker
                .child
                .kill()
                .map_err(|e| format!("kill {kill}: {e}"))?; // SIGKILL
            worker
                .child
                .wait()
                .map_err(|e| format!("kill {kill}: {e}"))?;
            *worker = spawn(command(true)?, victim)?;
        }
        if kill % 100 == 0 {
            println!("chaos: {kill} kills in {:.0?}", started.elapsed());
        }
    }
    // The final phase: worker 0 runs to the end and exits; the others serve meanwhile.
    let first = &mut fleet[0];
    let _ = first.child.kill();
    let _ = first.child.wait();
    *first = spawn(command(false)?, 0)?;
    let deadline = Instant::now() + FINAL_LIMIT;
    let finished = loop {
        if let Some(status) = fleet[0].child.try_wait().map_err(|e| e.to_string())? {
            if status.success() {
                break true;
            }
            // Worker 0 halted: it starts again.
            report.halted += 1;
            fleet[0] = spawn(command(false)?, 0)?;
        }
        restart_exited(&mut fleet[1..], &command, &mut report, true)?;
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for worker in &mut fleet {
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
    Ok((report, finished))
}

/// Starts again every worker of `fleet` that exited by itself.
fn restart_exited(
    fleet: &mut [Worker],
    command: &impl Fn(bool) -> Result<Command, String>,
    report: &mut Kills,
    serve: bool,
) -> Result<(), String> {
    for worker in fleet {
        if worker
            .child
            .try_wait()
            .map_err(|e| e.to_string())?
            .is_some()
        {
            report.halted += 1;
            if worker.paused {
                report.exited_after_pause += 1;
            }
            *worker = spawn(command(serve)?, worker.index)?;
        }
    }
    Ok(())
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`.
fn signal(signal: &str, pid: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid)
        .status()
        .map_err(|e| format!("kill {signal} {pid}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {signal} {pid}: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        let cases = [
            ("postgres://u@h:5/db", "postgres://u@h:5/run"),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/run?sslmode=disable",
            ),
            ("postgres://h", "postgres://h/run"),
            ("postgresql://h:5?x=1", "postgresql://h:5/run?x=1"),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "run").unwrap(), want);
        }
    }
}
