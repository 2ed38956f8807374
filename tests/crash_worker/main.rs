//! The process the crash test kills: opens the store in `DIR/durable` and the ledger in
//! `DIR/ledger`, starts (or finds) every pipeline, waits for all of them and exits 0.
//!
//! Usage: `crash-worker DIR`

// The crash test reads the ledger and expected outputs through the same module.
#[allow(dead_code)]
mod workload;

use std::time::Duration;

use durable_core::{FjallStore, Runtime};
use workload::{INSTANCES, Ledger, apply_step, instance_id, pipeline};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: crash-worker DIR");
    let dir = std::path::Path::new(&dir);
    let store = FjallStore::open(dir.join("durable")).expect("open the store");
    let ledger = Ledger::open(&dir.join("ledger"));
    let runtime = Runtime::builder(store)
        .orchestrator(pipeline)
        .activity(apply_step)
        .state(ledger)
        .start()
        .await
        .expect("start the runtime");
    let client = runtime.client();
    let mut instances = Vec::new();
    for n in 0..INSTANCES {
        instances.push(
            client
                .start(pipeline, instance_id(n), n)
                .await
                .expect("start"),
        );
    }
    for instance in &instances {
        instance
            .wait(Duration::from_secs(60))
            .await
            .expect("instance finishes");
    }
    runtime.shutdown().await;
    println!("crash-worker: {INSTANCES} instances finished");
}
