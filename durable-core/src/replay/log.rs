//! Replay-safe logging: `tracing` events that orchestrator code emits while it replays
//! steps it already ran are muted, so each appears once, when the code first runs.
//!
//! While a replay is under way the thread's default dispatcher is swapped for one that
//! drops everything; the moment the code gets past what it ran before, the real one is
//! restored. Polling is synchronous, so the swap never leaks to other tasks.

use std::cell::RefCell;

use tracing::Dispatch;
use tracing::dispatcher::DefaultGuard;

thread_local! {
    static MUTED: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// Mutes `tracing` on this thread until [`unmute`].
pub(crate) fn mute() {
    MUTED.with(|muted| {
        let mut muted = muted.borrow_mut();
        if muted.is_none() {
            *muted = Some(tracing::dispatcher::set_default(&Dispatch::none()));
        }
    });
}

/// Restores the dispatcher [`mute`] replaced.
pub(crate) fn unmute() {
    MUTED.with(|muted| drop(muted.borrow_mut().take()));
}
