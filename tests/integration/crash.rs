//! A child process running several orchestrations is SIGKILLed at seeded random moments,
//! restarted each time, and finally left to finish: every instance completes with the
//! right output and no effect written under an idempotency key is applied twice.

#[path = "../crash_worker/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use durable_core::record::Status;
use durable_core::{FjallStore, Store};
use workload::{INSTANCES, Ledger, STEPS, expected_output, instance_id};

const KILLS: usize = 8;

/// A small seeded generator, so a failing schedule of kills can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn worker(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crash-worker"));
    command.arg(dir).stdout(Stdio::null()).stderr(Stdio::null());
    command
}

#[test]
fn killed_workers_resume_and_apply_every_effect_once() {
    let seed = std::env::var("DURABLE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    // The ledger stands for the application's own database, which exists before the
    // workflows run; only the durable store is created under fire.
    drop(Ledger::open(&dir.path().join("ledger")));

    let mut killed_while_running = 0;
    for _ in 0..KILLS {
        let mut child = worker(dir.path()).spawn().expect("spawn crash-worker");
        std::thread::sleep(Duration::from_millis(10 + rng.below(90)));
        if child.try_wait().unwrap().is_none() {
            killed_while_running += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(
        killed_while_running > 0,
        "no kill landed while the worker was running (seed {seed})"
    );

    let started = Instant::now();
    let run = worker(dir.path())
        .stderr(Stdio::piped())
        .output()
        .expect("run crash-worker");
    assert!(
        run.status.success(),
        "the final run failed: {} (seed {seed}):\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(120));

    let store = FjallStore::open(dir.path().join("durable")).expect("the store reopens cleanly");
    for n in 0..INSTANCES {
        let record = store
            .instance(&instance_id(n))
            .unwrap()
            .expect("instance exists");
        match record.status {
            Status::Completed { output } => {
                let output: u64 = serde_json::from_slice(&output).unwrap();
                assert_eq!(
                    output,
                    expected_output(n),
                    "output of {} (seed {seed})",
                    instance_id(n)
                );
            }
            other => panic!("{} ended {other:?} (seed {seed})", instance_id(n)),
        }
    }
    assert!(
        store.work_items().unwrap().is_empty(),
        "work left in the queue"
    );

    let ledger = Ledger::open(&dir.path().join("ledger"));
    let mut applied: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, logical) in ledger.entries() {
        applied.entry(logical).or_default().push(key);
    }
    for (logical, keys) in &applied {
        assert_eq!(
            keys.len(),
            1,
            "effect {logical} applied under several keys {keys:?} (seed {seed})"
        );
    }
    assert_eq!(
        applied.len() as u64,
        INSTANCES * STEPS,
        "every step's effect is in the ledger once (seed {seed})"
    );
}
