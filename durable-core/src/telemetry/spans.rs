//! The runtime's `tracing` spans, named and tagged as Temporal's and duroxide's users
//! expect: one per client call, per orchestration turn, per activity attempt and per
//! entity turn (the table is in the [module doc](super)).
//!
//! Each span is made by one function here, so names and fields stay alike across the
//! runtime. Field values borrow: with no subscriber, or one that does not want the span,
//! making it costs a check of the callsite's interest and no allocation.

use durable_store::{ActivityTask, WorkerId};
use tracing::Span;
use tracing::field::Empty;

use super::context::{self, TraceContext};

/// Client operations, the prefix of their spans' `otel.name` (Temporal's names).
pub(crate) const START: &str = "StartWorkflow";
/// A raised event (Temporal's signal).
pub(crate) const SIGNAL: &str = "SignalWorkflow";

/// A client call (`op` is [`START`], [`SIGNAL`] or another Temporal-style name such as
/// `TerminateWorkflow`) on instance `instance`; `target` is the orchestrator started or
/// the event raised (empty for none). Parented on `trace` when the client has one.
pub(crate) fn client_call(
    op: &'static str,
    target: &str,
    instance: &str,
    trace: Option<&TraceContext>,
) -> Span {
    let span = tracing::info_span!(
        "client",
        otel.name = %OtelName(op, target),
        otel.kind = "client",
        instance_id = instance,
        target,
        traceparent = Empty,
    );
    parent(&span, trace);
    span
}

/// One orchestration turn of `instance` (generation `generation` of orchestrator
/// `orchestrator`) on worker `worker`, over `events` new events; a child of `trace`.
pub(crate) fn turn(
    instance: &str,
    orchestrator: &str,
    generation: u32,
    worker: WorkerId,
    events: usize,
    trace: Option<&TraceContext>,
) -> Span {
    let span = tracing::info_span!(
        "turn",
        otel.name = %OtelName("RunWorkflow", orchestrator),
        instance_id = instance,
        orchestration_name = orchestrator,
        generation,
        worker_id = worker,
        events,
        traceparent = Empty,
    );
    parent(&span, trace);
    span
}

/// One attempt of activity `task` on worker `worker`; a child of `trace`, the context
/// of the turn that scheduled it.
pub(crate) fn activity(
    task: &ActivityTask,
    worker: WorkerId,
    trace: Option<&TraceContext>,
) -> Span {
    let span = tracing::info_span!(
        "activity",
        otel.name = %OtelName("RunActivity", &task.activity),
        instance_id = %task.instance,
        activity_name = %task.activity,
        seq = task.seq,
        attempt = task.attempt,
        generation = task.generation,
        worker_id = worker,
        traceparent = Empty,
    );
    parent(&span, trace);
    span
}

/// One turn of entity `entity` (its instance id, `@Name@key`) on worker `worker`. The
/// span's `otel.name` holds the entity's name, not its key: span names stay few.
pub(crate) fn entity_turn(entity: &str, worker: WorkerId, events: usize) -> Span {
    let name = entity
        .strip_prefix('@')
        .and_then(|rest| rest.split_once('@'))
        .map_or(entity, |(name, _)| name);
    tracing::info_span!(
        "entity_turn",
        otel.name = %OtelName("RunEntity", name),
        instance_id = entity,
        entity_name = name,
        worker_id = worker,
        events,
    )
}

/// Records `trace` on `span` (its `traceparent` field) and, with the `otel` feature,
/// makes it the span's parent. Nothing when the span is disabled.
pub(crate) fn parent(span: &Span, trace: Option<&TraceContext>) {
    if let Some(trace) = trace
        && !span.is_disabled()
    {
        span.record("traceparent", trace.traceparent());
        context::set_parent(span, trace);
    }
}

/// `op:target` (or `op` alone), written only when a subscriber records the field.
struct OtelName<'a>(&'static str, &'a str);

impl std::fmt::Display for OtelName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1.is_empty() {
            f.write_str(self.0)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}
