//! What the runtime says at start about the activities, orchestrators and entities the
//! registered orchestrators call but nobody registered (`Orchestrator::callees`): a warning under
//! `Unregistered::Wait`, a refusal to start under `Unregistered::Fail`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_core::{
    ActivityContext, Callee, Error, OrchestrationContext, Orchestrator, RetryPolicy, Runtime,
    Unregistered, UnregisteredCallee, activity, entity, orchestrator,
};

use crate::common::store;

#[activity]
async fn reserve(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[activity]
async fn charge(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n + 1)
}

#[activity]
async fn audit(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[activity]
async fn held_in_a_variable(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[orchestrator(name = "notify")]
async fn notify_v1(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[orchestrator(name = "notify", version = 2)]
async fn notify_v2(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n * 2)
}

#[orchestrator]
async fn ship(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

/// Calls in each form the macro lists, and two it does not.
#[orchestrator]
async fn checkout(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(reserve, n).await?;
    let policy = RetryPolicy::fixed(3, Duration::from_millis(10));
    let b = ctx.call_with_retry(charge, a, policy).await?;
    let audits = (0..2).map(|i| ctx.call(audit, b + i)).collect();
    let audited: Result<Vec<u64>, _> = ctx.join_all(audits).await.into_iter().collect();
    let c = ctx.sub_orchestration(notify_v2, audited?[0]).await?;
    let d = ctx.sub_orchestration_with_id(ship, "ship-it", c).await?;
    // Not listed: a handle held in a variable, and a call compiled out.
    let hidden = held_in_a_variable;
    let e = ctx.call(hidden, d).await?;
    #[cfg(any())]
    ctx.call(no_such_activity, e).await?;
    Ok(e)
}

fn missing(callee: Callee) -> UnregisteredCallee {
    UnregisteredCallee {
        orchestrator: "checkout",
        version: 1,
        callee,
    }
}

/// What `checkout` calls that a runtime with only `checkout`, `reserve` and version 1 of
/// `notify` lacks, in the order `start` reports them.
fn expected_missing() -> Vec<UnregisteredCallee> {
    vec![
        missing(Callee::CallActivity { name: "audit" }),
        missing(Callee::CallActivity { name: "charge" }),
        missing(Callee::CallSubOrchestrator {
            name: "notify",
            version: 2,
        }),
        missing(Callee::CallSubOrchestrator {
            name: "ship",
            version: 1,
        }),
    ]
}

#[test]
fn the_macro_lists_what_the_body_calls() {
    assert_eq!(
        checkout::callees(),
        [
            Callee::activity::<reserve>(),
            Callee::activity::<charge>(),
            Callee::activity::<audit>(),
            Callee::orchestrator::<notify_v2>(),
            Callee::orchestrator::<ship>(),
        ]
    );
    assert_eq!(ship::callees(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fail_start_refuses_naming_each_unregistered_call() {
    let (_dir, store) = store();
    let err = Runtime::builder(store.clone())
        .orchestrator(checkout)
        .orchestrator(notify_v1)
        .activity(reserve)
        .on_unregistered(Unregistered::Fail)
        .start()
        .await
        .unwrap_err();
    let Error::UnregisteredCallees(found) = &err else {
        panic!("expected UnregisteredCallees, got {err:?}");
    };
    assert_eq!(found, &expected_missing());
    let message = err.to_string();
    for part in [
        "orchestrator `checkout` calls activity `charge`, which is not registered; \
         add it with `RuntimeBuilder::activity`",
        "orchestrator `checkout` calls activity `audit`",
        "orchestrator `checkout` calls version 2 of orchestrator `notify`, which is not \
         registered; add it with `RuntimeBuilder::orchestrator`",
        "orchestrator `checkout` calls orchestrator `ship`",
        "Unregistered::Wait",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }

    // Registered, it starts and runs.
    let runtime = Runtime::builder(store)
        .orchestrator(checkout)
        .orchestrator(notify_v2)
        .orchestrator(ship)
        .activity(reserve)
        .activity(charge)
        .activity(audit)
        .activity(held_in_a_variable)
        .on_unregistered(Unregistered::Fail)
        .start()
        .await
        .unwrap();
    assert_eq!(runtime.unregistered_callees(), []);
    let instance = runtime.client().start(checkout, "c", 3).await.unwrap();
    // reserve 3, charge 4, audit 4 and 5, notify (v2) 8, ship 8, the hidden call 8.
    assert_eq!(instance.wait(Duration::from_secs(10)).await.unwrap(), 8);
    runtime.shutdown().await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_wait_start_warns_naming_each_unregistered_call_and_runs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // `start` logs before it spawns anything, on this thread.
    let guard = tracing::subscriber::set_default(subscriber);
    let (_dir, store) = store();
    let runtime = Runtime::builder(store)
        .orchestrator(checkout)
        .orchestrator(notify_v1)
        .activity(reserve)
        .start()
        .await
        .unwrap();
    drop(guard);
    assert_eq!(runtime.unregistered_callees(), expected_missing());
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 4, "{log}");
    for (line, missing) in warnings.iter().zip(expected_missing()) {
        assert!(line.contains(&missing.to_string()), "{line}");
        assert!(
            line.contains("an instance that reaches the call waits"),
            "{line}"
        );
    }

    // The others run: an instance of `notify` completes.
    let instance = runtime.client().start(notify_v1, "n", 4).await.unwrap();
    assert_eq!(instance.wait(Duration::from_secs(10)).await.unwrap(), 4);
    runtime.shutdown().await;
}

/// A till: what `tip` signals and calls.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Till {
    total: u64,
}

#[entity]
impl Till {
    pub fn add(&mut self, n: u64) {
        self.total += n;
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Signals and calls the till entity, `Till`.
#[orchestrator]
async fn tip(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    ctx.signal_entity(Till::add, "front", n)?;
    ctx.call_entity(Till::add, "front", n).await?;
    Ok(ctx.call_entity(Till::total, "front", ()).await?)
}

#[test]
fn the_macro_lists_the_entities_the_body_calls_and_signals() {
    // One per operation handle named (`Till::add`, `Till::total`), each the entity type.
    assert_eq!(tip::callees(), [Callee::entity::<Till>(); 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fail_start_refuses_an_orchestrator_whose_entity_is_not_registered() {
    let (_dir, store) = store();
    let err = Runtime::builder(store.clone())
        .orchestrator(tip)
        .on_unregistered(Unregistered::Fail)
        .start()
        .await
        .unwrap_err();
    let Error::UnregisteredCallees(found) = &err else {
        panic!("expected UnregisteredCallees, got {err:?}");
    };
    let callee = Callee::CallEntity { name: "Till" };
    assert_eq!(
        found,
        &[UnregisteredCallee {
            orchestrator: "tip",
            version: 1,
            callee,
        }]
    );
    let message = err.to_string();
    let part = "orchestrator `tip` calls entity `Till`, which is not registered; \
                add it with `RuntimeBuilder::entity`";
    assert!(message.contains(part), "{part:?} not in {message}");

    // Registered, it starts and runs: the signal, then the call, then the read.
    let runtime = Runtime::builder(store)
        .orchestrator(tip)
        .entity::<Till>()
        .on_unregistered(Unregistered::Fail)
        .start()
        .await
        .unwrap();
    assert_eq!(runtime.unregistered_callees(), []);
    let instance = runtime.client().start(tip, "t", 3).await.unwrap();
    assert_eq!(instance.wait(Duration::from_secs(10)).await.unwrap(), 6);
    runtime.shutdown().await;
}
