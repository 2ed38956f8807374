//! [`TraceContext`]: the W3C trace context a caller hands to the work it starts, stored
//! with that work (an [`Event::TraceContext`] message beside the `Started` or
//! `EventRaised` it came with, then in the history) so that the turns and activities that
//! run later, after a restart or on another worker, join the caller's trace.

use std::sync::Arc;

use durable_store::Event;

/// A W3C trace context (<https://www.w3.org/TR/trace-context/>): the `traceparent` of the
/// caller's span and its `tracestate`.
///
/// A client made with [`Client::with_trace_context`](crate::Client::with_trace_context)
/// sends it with every instance it starts and every event it raises; with the `otel`
/// feature, a client without one sends the context of the current `tracing` span.
///
/// # Examples
///
/// ```
/// use durable_core::TraceContext;
///
/// let trace = TraceContext::from_traceparent(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// )
/// .unwrap();
/// assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(TraceContext::from_traceparent("not a traceparent").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    traceparent: String,
    tracestate: String,
}

/// A `traceparent` that is not of the W3C form
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (ids not all zero).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a W3C traceparent: write `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, \
     lower-case, with ids not all zero"
)]
pub struct InvalidTraceparent(pub String);

impl TraceContext {
    /// The context of a `traceparent` header, with no `tracestate`.
    ///
    /// # Errors
    ///
    /// [`InvalidTraceparent`] if `traceparent` is not of version `00` of the W3C form,
    /// lower-case hex, its trace and span ids not all zero.
    pub fn from_traceparent(traceparent: &str) -> Result<Self, InvalidTraceparent> {
        if !valid_traceparent(traceparent) {
            return Err(InvalidTraceparent(traceparent.to_string()));
        }
        Ok(Self {
            traceparent: traceparent.to_string(),
            tracestate: String::new(),
        })
    }

    /// The same context with the `tracestate` header `tracestate` (vendor entries,
    /// `key=value` pairs separated by commas), carried as it is.
    pub fn with_tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = tracestate.into();
        self
    }

    /// The `traceparent` header.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` header; empty for none.
    pub fn tracestate(&self) -> &str {
        &self.tracestate
    }

    /// The trace id: 32 lower-case hex digits.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The caller's span id (the parent of what runs in this context): 16 hex digits.
    pub fn span_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    /// The message that carries the context to an instance.
    pub(crate) fn to_event(&self) -> Event {
        Event::TraceContext {
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
        }
    }

    /// The context an [`Event::TraceContext`] carries; `None` for another event, or for a
    /// stored `traceparent` that is not valid (it is then ignored, not an error: a trace
    /// is never a reason for work to stop).
    pub(crate) fn of_event(event: &Event) -> Option<Self> {
        match event {
            Event::TraceContext {
                traceparent,
                tracestate,
            } if valid_traceparent(traceparent) => Some(Self {
                traceparent: traceparent.clone(),
                tracestate: tracestate.clone(),
            }),
            _ => None,
        }
    }

    /// The last context among `events` (a turn's messages, or a history up to a step).
    pub(crate) fn last_in<'a>(events: impl DoubleEndedIterator<Item = &'a Event>) -> Option<Self> {
        events.rev().find_map(Self::of_event)
    }

    /// The context to send with a start or a raise, made in the client call's span: with
    /// the `otel` feature, that span's context if it is in a trace (a child of `explicit`,
    /// or of the caller's current span); else `explicit`, the client's own. The current
    /// span is taken over `explicit` only in `explicit`'s trace: when a filter turns the
    /// client call's span off, the current span is the caller's, maybe of another trace.
    pub(crate) fn for_request(explicit: Option<&TraceContext>) -> Option<TraceContext> {
        match (current(), explicit) {
            (Some(current), Some(explicit)) if current.trace_id() != explicit.trace_id() => {
                Some(explicit.clone())
            }
            (current, explicit) => current.or_else(|| explicit.cloned()),
        }
    }
}

/// The trace context of activity step `seq` in `history`: the last one recorded before
/// its `ActivityScheduled`, as the turn that scheduled it had it. For a task taken over
/// from the store, whose turn ran in another process.
pub(crate) fn of_step(history: &[Event], seq: u64) -> Option<TraceContext> {
    let at = history
        .iter()
        .position(|event| matches!(event, Event::ActivityScheduled { seq: s, .. } if *s == seq))?;
    TraceContext::last_in(history[..at].iter())
}

/// What the runtime knows of the trace context of an activity task it is to run.
#[derive(Clone, Debug)]
pub(crate) enum ActivityTrace {
    /// The context of the turn that scheduled it, in this process (`None`: no trace).
    Known(Option<Arc<TraceContext>>),
    /// A task taken over from the store: looked up in its instance's history
    /// ([`of_step`]), if a subscriber records the activity's span.
    Stored,
}

impl std::fmt::Display for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.traceparent)
    }
}

/// Whether `s` is a version-00 `traceparent`: `00-` + 32 hex + `-` + 16 hex + `-` + 2 hex,
/// lower case, the ids not all zero.
fn valid_traceparent(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let zero = |r: std::ops::Range<usize>| b[r].iter().all(|c| *c == b'0');
    b.len() == 55
        && b.starts_with(b"00-")
        && b[35] == b'-'
        && b[52] == b'-'
        && hex(3..35)
        && hex(36..52)
        && hex(53..55)
        && !zero(3..35)
        && !zero(36..52)
}

/// The current span's context, if it is in an OpenTelemetry trace.
#[cfg(feature = "otel")]
fn current() -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    if !sc.is_valid() {
        return None;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    Some(TraceContext {
        traceparent,
        tracestate: sc.trace_state().header(),
    })
}

/// Without the `otel` feature no span carries an OpenTelemetry context: only a client's
/// explicit one is sent.
#[cfg(not(feature = "otel"))]
fn current() -> Option<TraceContext> {
    None
}

/// Makes `span` a child of the remote span `trace` names (with the `otel` feature; a
/// span no OpenTelemetry layer records is left as it is).
#[cfg(feature = "otel")]
pub(crate) fn set_parent(span: &tracing::Span, trace: &TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(trace.trace_id()),
        SpanId::from_hex(trace.span_id()),
        u8::from_str_radix(&trace.traceparent[53..55], 16),
    ) else {
        return;
    };
    let state = trace.tracestate.parse::<TraceState>().unwrap_or_default();
    let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state);
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Without the `otel` feature the context is recorded as the span's `traceparent` field
/// only (see [`super::spans`]).
#[cfg(not(feature = "otel"))]
pub(crate) fn set_parent(_span: &tracing::Span, _trace: &TraceContext) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_of_the_w3c_form_are_taken_and_others_refused() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::from_traceparent(good).unwrap();
        assert_eq!(trace.span_id(), "00f067aa0ba902b7");
        assert_eq!(TraceContext::of_event(&trace.to_event()), Some(trace));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::from_traceparent(bad).is_err(), "{bad}");
        }
    }
}
