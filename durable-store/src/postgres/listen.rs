//! [`Store::wait_for_work`](crate::Store::wait_for_work) on PostgreSQL: a thread of the
//! store `LISTEN`s on [`CHANNEL`] on a connection of its own and wakes the waiters on each
//! notification (a commit that left items unheld, a worker that left). It connects again
//! when its connection breaks, and wakes the waiters then, since it may have missed a
//! notification; the waiters' timeout is the polling fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::connect::{Conn, Target};
use super::lease::CHANNEL;
use crate::error::StoreError;
use crate::lease::local::WorkSignal;

/// How often the thread looks whether the store was dropped, and waits before connecting
/// again.
const TICK: Duration = Duration::from_millis(50);

/// The listening thread of one store; it ends when this drops.
pub(super) struct Listener {
    signal: Arc<WorkSignal>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts the thread and waits until it listens.
    ///
    /// # Errors
    ///
    /// What connecting or `LISTEN` failed with, the first time.
    pub(super) fn start(target: Arc<Target>) -> Result<Self, StoreError> {
        let signal = Arc::new(WorkSignal::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, listening) = sync_channel(1);
        let thread = {
            let (signal, stop) = (signal.clone(), stop.clone());
            std::thread::Builder::new()
                .name("durable-pg-listen".to_owned())
                .spawn(move || {
                    let mut conn = match listen(&target) {
                        Ok(conn) => {
                            let _ = ready.send(Ok(()));
                            Some(conn)
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let Some(open) = conn.as_mut() else {
                            std::thread::sleep(TICK);
                            conn = listen(&target).ok();
                            // What was notified while it was not listening is lost.
                            signal.wake();
                            continue;
                        };
                        if !wait(open, &signal) {
                            conn = None;
                        }
                    }
                })
                .map_err(|e| StoreError::Io {
                    detail: format!("cannot start the store's listening thread: {e}"),
                    source: crate::error::cause(e),
                })?
        };
        let listener = Self {
            signal,
            stop,
            thread: Some(thread),
        };
        match listening.recv() {
            Ok(Ok(())) => Ok(listener),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Io {
                detail: "the store's listening thread stopped".to_owned(),
                source: None,
            }),
        }
    }

    /// Waits for the next notification, at most `timeout`.
    pub(super) fn wait(&self, timeout: Duration) {
        self.signal.wait(timeout);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A new connection listening on [`CHANNEL`].
fn listen(target: &Target) -> Result<Conn, StoreError> {
    let mut conn = target.connect()?;
    conn.client()
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| target.error("listening for work", e))?;
    Ok(conn)
}

/// Waits up to a [`TICK`] for notifications on `conn`, and wakes the waiters once for all
/// that came. Returns whether the connection is still good.
fn wait(conn: &mut Conn, signal: &WorkSignal) -> bool {
    let first = conn.client().notifications().timeout_iter(TICK).next();
    match first {
        Ok(Some(_)) => {
            // The ones already here are part of the same wake-up.
            let mut notifications = conn.client().notifications();
            let mut pending = notifications.iter();
            while let Ok(Some(_)) = pending.next() {}
            signal.wake();
            true
        }
        Ok(None) => !conn.is_closed(),
        Err(_) => false,
    }
}
