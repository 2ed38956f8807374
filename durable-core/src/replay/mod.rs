//! The replay engine: one turn of an orchestration as a pure step, history in, commands
//! out.
//!
//! An [`Execution`] holds a live orchestrator future and the [`ReplayState`] it shares with
//! the orchestrator's context. A turn feeds it events (on a fresh execution the recorded
//! history first, replayed in the turns it was written in) and polls the future once for
//! the new events; what comes out is a [`Turn`]: the events to append to the history, the
//! [`Command`]s for the runtime (activities to run, timers to set, sub-orchestrations to
//! start), and the instance's [`Outcome`]. No I/O happens here: the runtime loads, commits
//! and dispatches. Nothing here names the async runtime or the store, only the store's
//! records.
//!
//! Durable operations get sequence numbers in program order, assigned when they are
//! called. An operation whose number is already in the history must match what the
//! history recorded (its kind and name) or the turn stops with a nondeterminism failure
//! naming both await sites; its result is served from the history.
//!
//! The recorded turns are replayed one by one, each polled before the next, and only
//! then are the new events applied and the code polled once more. A `patched` call
//! reached while a recorded turn replays answers `true` only if the history has its
//! marker at that step (the instance predates the change otherwise, whatever it awaited
//! next); reached on the new events, it records the marker (see `ReplayState::patched`
//! and the table in [`crate::determinism`]).
//!
//! The runtime puts a turn marker (`Event::TurnStarted`, the turn's time, for tools)
//! first among the events it brings a turn. Replay applies it as nothing: not a step, not
//! an event, compared with nothing; it is brought, not issued, so the recorded turns split
//! where they did without it, and a history written before markers existed replays as it
//! did. A turn whose brought events were all dropped and that issued nothing appends
//! nothing, its marker included.
//!
//! A turn that ends running with a live event wait whose event has not arrived appends
//! an `Event::EventAwaited` (its name, the index of the event it will take, its site), for
//! tools, once per (name, index): replay notes those the history holds and appends no
//! other. It is issued, so the recorded turns split after it as they ran; a history
//! written before it existed replays as it did (a turn that only catches up with such a
//! history appends the waits live at its end, where its last turn was polled, which the
//! runtime commits). The index is counted when the turn ends, over the waits live then,
//! so a wait dropped before its event arrived (it lost a race with a timeout) is not
//! recorded as ended, and a later wait for the same (name, index) appends nothing.
//!
//! An execution deadline (`Client::start_with` with an execution timeout) reaches replay
//! as events too: `Event::ExecutionDeadline`, brought beside `Started` (and again at each
//! generation), is noted and changes nothing the code sees; `Event::ExecutionTimedOut`,
//! brought when the runtime's deadline timer fires, ends the run failed as
//! `FailureKind::TimedOut` without polling the code again, whatever it waits on. A history
//! without them replays as before.
//!
//! The files, from the bottom up: `recorded.rs` (the kinds of recorded values and
//! markers, with their strings on disk), `step.rs` (a step asked for, recorded, answered),
//! `event_queues.rs` (external events until a wait takes them), `locks.rs` (the critical
//! sections over entities, opened by a lock request and closed by its release), `turn.rs` (what a turn
//! produces), `log.rs` (muting logs while replaying), `state.rs` (what the context shares
//! with the execution) and `execution.rs` (the step itself). The failures replay builds
//! (a nondeterminism, an undecodable payload) are built with all the others, in
//! [`crate::failure`]. The user-facing side (the context, the futures) sits
//! above, in `orchestration_context.rs` and `durable_future.rs`, and starts here.
//!
//! [`Execution`]: execution::Execution
//! [`ReplayState`]: state::ReplayState
//! [`Turn`]: turn::Turn
//! [`Command`]: turn::Command
//! [`Outcome`]: turn::Outcome

pub(crate) mod event_queues;
pub(crate) mod execution;
pub(crate) mod locks;
mod log;
pub(crate) mod recorded;
pub(crate) mod state;
pub(crate) mod step;
pub(crate) mod turn;
