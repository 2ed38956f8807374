//! Traces and metrics that follow a workflow (issue 15, section 3).
//!
//! `traces_follow_a_workflow_through_a_kill`: a child process (this test binary, running
//! the ignored test `telemetry_child`) exports its spans to a file as each ends; under a
//! caller's span it starts an instance (activities, a timer, an event), and is SIGKILLed
//! inside an activity. A second child restarts the runtime, raises the event with the
//! caller's `traceparent` (`Client::with_trace_context`, no current span), and lets the
//! instance finish. Every turn and activity span, before and after the kill, is in the
//! caller's trace, and each activity span's parents chain to the caller's span.
//!
//! `an_explicit_trace_context_travels_to_children_and_generations`: with no subscriber at
//! all, a client's own context is stored after `Started`, handed to a sub-orchestration and
//! to the next generation of a continue-as-new, and skipped by replay.
//!
//! `metrics_move_as_a_workflow_runs`: a local `DebuggingRecorder` sees the counters.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use durable_core::record::Event;
use durable_core::{
    ActivityContext, FjallStore, OrchestrationContext, Runtime, Store, TraceContext, activity,
    orchestrator,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Set in the child's environment: which run it is (`1` or `2`).
const PHASE: &str = "DURABLE_TELEMETRY_PHASE";
/// Set in the child's environment: the directory of the store and the spans file.
const DIR: &str = "DURABLE_TELEMETRY_DIR";
const INSTANCE: &str = "traced";

/// What the first child's `stuck` activity needs: where to say it started, and whether it
/// is to hang (the first run) or return (the run after the kill).
#[derive(Debug)]
struct Phase {
    first: bool,
    dir: PathBuf,
}

#[activity]
async fn step(_ctx: ActivityContext, n: u32) -> Result<u32, String> {
    Ok(n)
}

#[activity]
async fn stuck(ctx: ActivityContext, n: u32) -> Result<u32, String> {
    let phase = ctx.state::<Phase>();
    if phase.first {
        std::fs::write(phase.dir.join("stuck-started"), b"").map_err(|e| e.to_string())?;
        std::future::pending::<()>().await;
    }
    Ok(n)
}

#[orchestrator]
async fn traced_flow(ctx: OrchestrationContext, _input: ()) -> Result<u32, String> {
    let a = ctx.call(step, 1).await?;
    ctx.sleep(Duration::from_millis(10)).await;
    let b = ctx.call(stuck, 2).await?;
    let c = ctx.call(step, 3).await?;
    let go: bool = ctx.wait_event("go").await;
    let d = ctx.call(step, if go { 4 } else { 0 }).await?;
    Ok(a + b + c + d)
}

/// One ended span, as the child wrote it.
#[derive(Debug, Clone)]
struct Exported {
    phase: String,
    name: String,
    trace: String,
    span: String,
    parent: String,
    instance: String,
}

/// Appends a line per ended span to a file, written at once: a process killed with
/// SIGKILL leaves every span it ended.
#[derive(Debug)]
struct FileExporter {
    phase: String,
    file: Mutex<File>,
}

impl SpanExporter for FileExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut file = self.file.lock().unwrap();
        for span in batch {
            let instance = span
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "instance_id")
                .map(|kv| kv.value.to_string())
                .unwrap_or_default();
            writeln!(
                file,
                "{}\t{}\t{}\t{}\t{}\t{}",
                self.phase,
                span.name,
                span.span_context.trace_id(),
                span.span_context.span_id(),
                span.parent_span_id,
                instance
            )
            .unwrap();
        }
        Ok(())
    }
}

fn read_spans(dir: &Path) -> Vec<Exported> {
    let text = std::fs::read_to_string(dir.join("spans.tsv")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Exported {
                phase: f[0].into(),
                name: f[1].into(),
                trace: f[2].into(),
                span: f[3].into(),
                parent: f[4].into(),
                instance: f[5].into(),
            }
        })
        .collect()
}

/// The child process: run `phase` of the workflow with spans exported to `DIR/spans.tsv`.
#[test]
#[ignore = "the child process of traces_follow_a_workflow_through_a_kill, which runs it"]
fn telemetry_child() {
    let (Ok(phase), Ok(dir)) = (std::env::var(PHASE), std::env::var(DIR)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("spans.tsv"))
        .unwrap();
    let exporter = FileExporter {
        phase: phase.clone(),
        file: Mutex::new(file),
    };
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("telemetry-test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let first = phase == "1";

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = FjallStore::open(dir.join("durable")).unwrap();
        let runtime = Runtime::builder(store)
            .orchestrator(traced_flow)
            .activity(step)
            .activity(stuck)
            .state(Phase {
                first,
                dir: dir.clone(),
            })
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        if first {
            let caller = tracing::info_span!("caller");
            client
                .start(traced_flow, INSTANCE, ())
                .instrument(caller)
                .await
                .unwrap();
            // The caller's span has ended (exported): the parent kills this process once
            // `stuck` has started.
            tokio::time::sleep(Duration::from_secs(120)).await;
            panic!("the first child was not killed");
        }
        let caller = read_spans(&dir)
            .into_iter()
            .find(|s| s.name == "caller")
            .expect("the first child exported the caller's span");
        let traceparent = format!("00-{}-{}-01", caller.trace, caller.span);
        let traced =
            client.with_trace_context(TraceContext::from_traceparent(&traceparent).unwrap());
        traced.raise_event(INSTANCE, "go", &true).await.unwrap();
        let output = client
            .instance(traced_flow, INSTANCE)
            .wait(Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(output, 10);
        runtime.shutdown().await;
    });
    provider.shutdown().unwrap();
}

fn child(dir: &Path, phase: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "telemetry::telemetry_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PHASE, phase)
        .env(DIR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn traces_follow_a_workflow_through_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = child(dir.path(), "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let caller_exported = || read_spans(dir.path()).iter().any(|s| s.name == "caller");
    while !dir.path().join("stuck-started").exists() || !caller_exported() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first child ended before its activity hung"
        );
        assert!(
            Instant::now() < deadline,
            "the first child never reached `stuck`"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let second = child(dir.path(), "2").output().unwrap();
    assert!(
        second.status.success(),
        "the child after the kill failed: {}\n{}",
        second.status,
        String::from_utf8_lossy(&second.stderr)
    );

    let spans = read_spans(dir.path());
    let caller = spans.iter().find(|s| s.name == "caller").unwrap();
    let by_id: HashMap<&str, &Exported> = spans.iter().map(|s| (s.span.as_str(), s)).collect();
    let of_instance: Vec<&Exported> = spans
        .iter()
        .filter(|s| {
            s.instance == INSTANCE
                && (s.name.starts_with("RunWorkflow:") || s.name.starts_with("RunActivity:"))
        })
        .collect();
    for s in &of_instance {
        assert_eq!(s.trace, caller.trace, "{s:?} is not in the caller's trace");
    }
    let count = |phase: &str, prefix: &str| {
        of_instance
            .iter()
            .filter(|s| s.phase == phase && s.name.starts_with(prefix))
            .count()
    };
    // Before the kill: the turns up to `stuck`, and `step(1)`.
    assert!(count("1", "RunWorkflow:traced_flow") >= 2, "{spans:#?}");
    assert_eq!(count("1", "RunActivity:step"), 1, "{spans:#?}");
    // After: `stuck` taken over from the store, `step(3)`, `step(4)`, and their turns.
    assert_eq!(count("2", "RunActivity:stuck"), 1, "{spans:#?}");
    assert_eq!(count("2", "RunActivity:step"), 2, "{spans:#?}");
    assert!(count("2", "RunWorkflow:traced_flow") >= 3, "{spans:#?}");
    for activity in of_instance
        .iter()
        .filter(|s| s.name.starts_with("RunActivity:"))
    {
        let mut at = activity.parent.as_str();
        let mut hops = 0;
        while at != caller.span {
            let parent = by_id
                .get(at)
                .unwrap_or_else(|| panic!("{activity:?}: its parent chain breaks at {at}"));
            at = parent.parent.as_str();
            hops += 1;
            assert!(hops < 10, "{activity:?}: its parent chain does not end");
        }
    }
}

#[orchestrator]
async fn traced_child(ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
    Ok(ctx.call(step, n).await?)
}

#[orchestrator]
async fn traced_parent(ctx: OrchestrationContext, round: u32) -> Result<u32, String> {
    let n = ctx
        .sub_orchestration_with_id(traced_child, format!("child-{round}"), round)
        .await
        .map_err(|e| e.to_string())?;
    if round == 0 {
        return ctx.continue_as_new(1).await;
    }
    Ok(n)
}

#[tokio::test]
async fn an_explicit_trace_context_travels_to_children_and_generations() {
    let (_dir, store) = crate::common::store();
    let runtime = Runtime::builder(store.clone())
        .orchestrator(traced_parent)
        .orchestrator(traced_child)
        .activity(step)
        .start()
        .await
        .unwrap();
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let trace = TraceContext::from_traceparent(header)
        .unwrap()
        .with_tracestate("vendor=1");
    let client = runtime.client().with_trace_context(trace.clone());
    assert_eq!(client.trace_context(), Some(&trace));
    let parent = client.start(traced_parent, "parent", 0).await.unwrap();
    assert_eq!(parent.wait(Duration::from_secs(20)).await.unwrap(), 1);
    let stored = Event::TraceContext {
        traceparent: header.to_string(),
        tracestate: "vendor=1".to_string(),
    };
    // The second generation's history, and each child's: `Started`, then the context (the
    // turns' time markers aside).
    for id in ["parent", "child-0", "child-1"] {
        let history: Vec<Event> = store
            .history(id)
            .unwrap()
            .into_iter()
            .filter(|event| !matches!(event, Event::TurnStarted { .. }))
            .collect();
        assert!(
            matches!(history[0], Event::Started { .. }),
            "{id}: {history:?}"
        );
        assert_eq!(history[1], stored, "{id}: {history:?}");
    }
    // Not a step: a history holding it replays as it ran.
    let saved = durable_core::replay_test::SavedHistory::export(&store, "child-1").unwrap();
    durable_core::replay_test::replay(traced_child, &saved).unwrap();
    let saved = durable_core::replay_test::SavedHistory::export(&store, "parent").unwrap();
    durable_core::replay_test::replay(traced_parent, &saved).unwrap();
    runtime.shutdown().await;
}

#[orchestrator]
async fn measured(ctx: OrchestrationContext, _input: ()) -> Result<u32, String> {
    let a = ctx.call(step, 1).await?;
    let failed = ctx.call(fails, ()).await.is_err();
    let go: bool = ctx.wait_event("go").await;
    Ok(a + u32::from(failed) + u32::from(go))
}

#[activity]
async fn fails(_ctx: ActivityContext, _input: ()) -> Result<u32, String> {
    Err("no".into())
}

#[test]
fn metrics_move_as_a_workflow_runs() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    metrics::with_local_recorder(&recorder, || {
        // One thread: every task of the runtime runs under the local recorder.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let start = || async {
                let store = FjallStore::open(dir.path()).unwrap();
                Runtime::builder(store)
                    .orchestrator(measured)
                    .activity(step)
                    .activity(fails)
                    .start()
                    .await
                    .unwrap()
            };
            let runtime = start().await;
            let client = runtime.client();
            client.start(measured, "measured", ()).await.unwrap();
            // Waits for the event: its turns so far ran; the next runtime replays it.
            let until = Instant::now() + Duration::from_secs(20);
            // Started, two activities scheduled and their results: 5 events.
            while client
                .record("measured")
                .await
                .unwrap()
                .unwrap()
                .history_len
                < 5
            {
                assert!(
                    Instant::now() < until,
                    "the instance never waited for its event"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            runtime.shutdown().await;
            // The store is closed once nothing holds it.
            drop(client);
            let runtime = start().await;
            let client = runtime.client();
            client.raise_event("measured", "go", &true).await.unwrap();
            let output = client
                .instance(measured, "measured")
                .wait(Duration::from_secs(20))
                .await
                .unwrap();
            assert_eq!(output, 3);
            runtime.shutdown().await;
        });
    });
    let counters: HashMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_string(), n)),
            _ => None,
        })
        .collect();
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert!(counter("durable_turns_total") >= 4, "{counters:?}");
    assert!(counter("durable_replays_total") >= 1, "{counters:?}");
    assert_eq!(
        counter("durable_activity_executions_total"),
        2,
        "{counters:?}"
    );
    assert_eq!(
        counter("durable_activity_failures_total"),
        1,
        "{counters:?}"
    );
}
