//! Replay-safe logging: what orchestrator code logs appears once, not again on replay.

use std::sync::{Arc, Mutex};

use durable_core::replay_test::Execution;
use durable_core::{OrchestrationContext, orchestrator};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::builders::*;

/// Collects the messages of the events it sees.
#[derive(Clone, Default)]
struct Messages(Arc<Mutex<Vec<String>>>);

struct MessageVisitor<'a>(&'a mut String);

impl Visit for MessageVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Messages {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = String::new();
        event.record(&mut MessageVisitor(&mut message));
        self.0.lock().unwrap().push(message);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[orchestrator]
async fn chatty(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    tracing::info!("starting with {n}");
    let a = ctx.call(double, n).await?;
    tracing::info!("doubled to {a}");
    let b = ctx.call(triple, a).await?;
    tracing::info!("tripled to {b}");
    Ok(b)
}

#[test]
fn a_replay_does_not_repeat_what_the_orchestrator_logged() {
    let messages = Messages::default();
    let seen = messages.0.clone();
    tracing::subscriber::with_default(messages, || {
        let mut live = Execution::of(chatty, "i");
        let mut history = live.turn(&[], vec![started("chatty", &5u64)]).appended;
        history.extend(live.turn(&[], vec![completed(0, &10u64)]).appended);
        assert_eq!(*seen.lock().unwrap(), ["starting with 5", "doubled to 10"]);

        // After a restart, the instance is replayed and its next result arrives.
        let mut replayed = Execution::of(chatty, "i");
        replayed.turn(&history, vec![completed(1, &30u64)]);
        assert_eq!(
            *seen.lock().unwrap(),
            ["starting with 5", "doubled to 10", "tripled to 30"],
            "the replayed part logged nothing again"
        );
    });
}
