//! The runtime's clock: what durable timers, `ctx.now()` and the instances' timestamps read.
//! The system clock by default; a [`ManualClock`] in tests, which moves only when the test
//! says, so a workflow that sleeps for a month runs in milliseconds.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::handle::BoxFuture;

/// A source of time for a runtime. Set it with
/// [`RuntimeBuilder::clock`](crate::RuntimeBuilder::clock).
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Resolves once [`now`](Self::now) has reached `deadline`, never before.
    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<()>;
}

/// The system clock (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<()> {
        Box::pin(async move {
            // Slept in steps of the remaining time: the system clock may jump, and a timer
            // must never fire early.
            while let Ok(left) = deadline.duration_since(SystemTime::now()) {
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A clock that stands still until [`advance`](Self::advance) or [`set`](Self::set) moves
/// it, for tests of workflows that wait for days: durable timers fire when the clock
/// passes them, `ctx.now()` reads it, and nothing else changes. Clones share the time.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use durable_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// clock.advance(Duration::from_secs(60 * 60 * 24 * 30));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_000 + 2_592_000));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<watch::Sender<SystemTime>>,
}

impl ManualClock {
    /// A clock that reads `start` until moved.
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// A clock that reads the current system time, to the millisecond, until moved.
    pub fn starting_now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self::new(UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Moves the clock forward by `by`; the timers it passes fire.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }

    /// Sets the clock to `to` (a later time, for timers to fire; an earlier one is allowed
    /// and fires nothing).
    pub fn set(&self, to: SystemTime) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<()> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, so is every reader.
            let _ = now.wait_for(|now| *now >= deadline).await;
        })
    }
}

/// `time` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
