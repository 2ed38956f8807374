//! Traces and metrics that follow a workflow.
//!
//! **Spans.** The runtime opens a `tracing` span for each client call, orchestration turn,
//! activity attempt and entity turn. Their `otel.name` follows Temporal's OpenTelemetry
//! interceptors, and their fields duroxide's correlation fields:
//!
//! | span (`tracing` name) | `otel.name` | fields |
//! |---|---|---|
//! | `client` | `StartWorkflow:<orchestrator>`, `SignalWorkflow:<event>` | `instance_id`, `target`, `traceparent` |
//! | `turn` | `RunWorkflow:<orchestrator>` | `instance_id`, `orchestration_name`, `generation`, `worker_id`, `events`, `traceparent` |
//! | `activity` | `RunActivity:<activity>` | `instance_id`, `activity_name`, `seq`, `attempt`, `generation`, `worker_id`, `traceparent` |
//! | `entity_turn` | `RunEntity:<Name>` | `instance_id` (`@Name@key`), `entity_name`, `worker_id`, `events` |
//!
//! The orchestrator's own `tracing` events run inside its turn's span, and are muted while
//! the turn replays what already ran (each appears once, when the code first runs).
//!
//! **Trace context.** A start or a raise carries the caller's W3C trace context
//! ([`TraceContext`]): the client's own ([`Client::with_trace_context`](crate::Client::with_trace_context)),
//! or else, with the `otel` feature, the context of the client call's span (itself a
//! child of the caller's current span). It is stored with the work, as an
//! `Event::TraceContext` message beside the `Started` or `EventRaised`, then in the
//! history (replay skips it: it is not a step). A turn opens its span as a child of the
//! last context the history and its new events hold, and the activities it schedules
//! as children of the same; a task taken over after a restart, or by another worker,
//! finds it in its instance's history. Sub-orchestrations and the next generation of a
//! continue-as-new get the turn's context with their `Started`. So the turns and
//! activities of one workflow join the caller's trace across restarts and workers.
//! Without the `otel` feature the context is still stored, and recorded as the spans'
//! `traceparent` field.
//!
//! **Metrics** (the `metrics` feature, through the `metrics` facade; the application
//! installs the recorder):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `durable_turns_total` | counter | orchestration turns run |
//! | `durable_replays_total` | counter | turns that replayed a history (no cached execution) |
//! | `durable_turn_duration_seconds` | histogram | a turn, from its plan to its durable commit |
//! | `durable_activity_executions_total` | counter | activity attempts that ran |
//! | `durable_activity_failures_total` | counter | attempts that failed (error, panic, timeout) |
//! | `durable_activity_duration_seconds` | histogram | an attempt's run time |
//! | `durable_commit_batch_size` | histogram | commits group commit wrote in one store write |
//! | `durable_activity_queue_depth` | gauge | activities waiting for a slot |

mod context;
pub(crate) mod metrics;
pub(crate) mod spans;

pub(crate) use context::{ActivityTrace, of_step};
pub use context::{InvalidTraceparent, TraceContext};
