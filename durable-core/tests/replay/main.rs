//! The replay step, driven directly: history in, events and commands out, no I/O.

mod builders;
mod entities;
mod event_wait_paths;
mod event_waits;
mod execution_timeout;
mod failures;
mod fresh_run;
mod logging;
mod nondeterminism;
mod partial_completion;
mod patches;
mod patterns;
mod status;
mod turn_markers;
