//! [`Position`]: where an instance stands in its code, read from its history: the steps
//! it awaits and the last one it issued, each with its await site. What a status page
//! shows beside the status, and where a stalled or failed instance stopped.

use std::collections::HashSet;

use durable_store::{Event, Site};

use crate::replay::step::StepKind;

/// A durable step of an instance, as its history records it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepAt {
    /// The step number: the instance's durable operations numbered from 0 in program
    /// order (in its current generation).
    pub step: u64,
    /// What the step is: "activity `pay`", "a timer", "sub-orchestration `refund`",
    /// "a recorded `now` value".
    pub operation: String,
    /// The await site: the call's source file, line and orchestrator function.
    pub site: Site,
}

impl std::fmt::Display for StepAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {}, {} ({})", self.step, self.operation, self.site)
    }
}

/// Where an instance stands in its code (its current generation), read from its history.
///
/// For a running instance, what it waits for; for a stalled, failed or terminated one,
/// where it stopped. An event wait is not a step: an instance waiting only for an event
/// awaits no step, and `last` is the step it took before the wait. `awaiting` lists the
/// steps whose results have not arrived, which is not always what the code still awaits:
/// the history does not record that the code dropped a step, so the timer of a
/// `ctx.timeout` whose future won, or the losing side of a `select`, is listed until its
/// result arrives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Position {
    /// The steps issued whose results have not arrived, in step order.
    pub awaiting: Vec<StepAt>,
    /// The last step issued, whether or not its result arrived; `None` before the first.
    pub last: Option<StepAt>,
}

impl Position {
    /// The position at the end of `history`.
    pub(crate) fn of(history: &[Event]) -> Self {
        let mut steps: Vec<StepAt> = Vec::new();
        // Steps whose result arrived; a recorded value is its own.
        let mut finished = HashSet::new();
        for event in history {
            match event {
                Event::ActivityScheduled { seq, site, .. }
                | Event::TimerCreated { seq, site, .. }
                | Event::SubOrchestrationScheduled { seq, site, .. }
                | Event::Recorded { seq, site, .. }
                | Event::EntityCalled { seq, site, .. }
                | Event::EntitySignaled { seq, site, .. }
                | Event::EntityLockRequested { seq, site, .. } => {
                    if let Some(kind) = StepKind::of(event) {
                        // A signal has no result to await.
                        if matches!(kind, StepKind::Recorded(_) | StepKind::EntitySignal { .. }) {
                            finished.insert(*seq);
                        }
                        steps.push(StepAt {
                            step: *seq,
                            operation: kind.to_string(),
                            site: site.clone(),
                        });
                    }
                }
                Event::ActivityCompleted { seq, .. }
                | Event::ActivityFailed { seq, .. }
                | Event::TimerFired { seq }
                | Event::SubOrchestrationCompleted { seq, .. }
                | Event::SubOrchestrationFailed { seq, .. }
                | Event::EntityCompleted { seq, .. }
                | Event::EntityFailed { seq, .. }
                | Event::EntityLockGranted { seq } => {
                    finished.insert(*seq);
                }
                _ => {}
            }
        }
        steps.sort_by_key(|step| step.step);
        Self {
            last: steps.last().cloned(),
            awaiting: steps
                .into_iter()
                .filter(|step| !finished.contains(&step.step))
                .collect(),
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.awaiting.as_slice(), &self.last) {
            ([], None) => write!(f, "before its first step"),
            ([], Some(last)) => write!(f, "after {last}"),
            (awaiting, _) => {
                write!(f, "awaiting ")?;
                for (i, step) in awaiting.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{step}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(line: u32) -> Site {
        Site {
            function: "order".into(),
            file: "src/order.rs".into(),
            line,
            line_offset: 0,
        }
    }

    #[test]
    fn names_the_steps_awaited_and_the_last_one() {
        let started = Event::Started {
            orchestrator: "order".into(),
            input: Vec::new(),
        };
        assert_eq!(
            Position::of(std::slice::from_ref(&started)).to_string(),
            "before its first step"
        );
        let mut history = vec![
            started,
            Event::ActivityScheduled {
                seq: 0,
                activity: "reserve".into(),
                input: Vec::new(),
                site: site(10),
            },
            Event::ActivityCompleted {
                seq: 0,
                output: Vec::new(),
            },
        ];
        // Waiting for an event after `reserve`: no step is awaited.
        assert_eq!(
            Position::of(&history).to_string(),
            "after step 0, activity `reserve` (src/order.rs:10 in `order`)"
        );
        history.extend([
            Event::TimerCreated {
                seq: 1,
                fire_at_ms: 5,
                site: site(12),
            },
            Event::SubOrchestrationScheduled {
                seq: 2,
                orchestrator: "pay".into(),
                instance: "c".into(),
                input: Vec::new(),
                site: site(13),
            },
        ]);
        let position = Position::of(&history);
        assert_eq!(
            position.awaiting.iter().map(|s| s.step).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(position.last.as_ref().map(|s| s.step), Some(2));
        assert_eq!(
            position.to_string(),
            "awaiting step 1, a timer (src/order.rs:12 in `order`); \
             step 2, sub-orchestration `pay` (src/order.rs:13 in `order`)"
        );
    }
}
