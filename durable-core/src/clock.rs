//! The runtime's clock: what durable timers, `ctx.now()`, attempt timeouts and the
//! instances' timestamps read. The system clock by default; a [`ManualClock`] in tests,
//! which moves only when the test says (or, skipping time, whenever the runtime has
//! nothing left to do but wait for it), so a workflow that sleeps for a month runs in
//! milliseconds.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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

    /// Told by a runtime on this clock that it has taken on work other than waiting for
    /// the clock: a turn to run, an activity to run, a client's request to hand over.
    /// Each call is followed, once that work is done, by one call of
    /// [`work_done`](Self::work_done). A clock that skips time
    /// ([`ManualClock::time_skipping`]) holds still while any such work is in hand; a
    /// clock that only tells the time ignores it (the default).
    fn work_began(&self) {}

    /// The work announced by one call of [`work_began`](Self::work_began) is done.
    fn work_done(&self) {}
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
/// # Skipping time
///
/// A clock made with [`time_skipping`](Self::time_skipping) also moves by itself, as
/// Temporal's time-skipping test environment does: whenever the runtimes on it have
/// nothing to do but wait for it (no turn to run, no activity queued or running, no
/// client request being handed over, no fired timer not yet delivered), it jumps to the
/// earliest time anything waits for. A retry's backoff, a reminder a week away, a 30-day
/// timeout: each fires as soon as everything before it is done, without the test moving
/// the clock. Activities run in real time: the clock holds still while one runs, so an
/// attempt timeout fires only if the test moves the clock. [`advance`](Self::advance) and
/// [`set`](Self::set) still work. A test that must act at a point in between (raise an
/// event before a timeout fires) uses a clock that does not skip.
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
    inner: Arc<Manual>,
}

#[derive(Debug)]
struct Manual {
    now: watch::Sender<SystemTime>,
    /// Set when the clock skips time.
    waits: Option<Mutex<Waits>>,
}

/// What a time-skipping clock knows of the runtimes on it.
#[derive(Debug, Default)]
struct Waits {
    /// Work in hand, as runtimes told (`work_began` less `work_done`).
    busy: usize,
    /// The sleeps not yet dropped, by deadline (and a number, to tell equal ones apart).
    /// One whose deadline has passed is a timer fired and not yet delivered: work.
    sleeps: BTreeMap<(SystemTime, u64), ()>,
    next_sleep: u64,
}

impl ManualClock {
    /// A clock that reads `start` until moved.
    pub fn new(start: SystemTime) -> Self {
        Self::with(start, None)
    }

    /// A clock that reads `start` and skips time: it jumps to the next timer whenever the
    /// runtimes on it have nothing else to do (see [Skipping time](#skipping-time)).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use durable_core::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::time_skipping(UNIX_EPOCH + Duration::from_secs(1_000));
    /// // Nothing waits for it yet, so it stands still.
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_000));
    /// ```
    pub fn time_skipping(start: SystemTime) -> Self {
        Self::with(start, Some(Mutex::new(Waits::default())))
    }

    fn with(start: SystemTime, waits: Option<Mutex<Waits>>) -> Self {
        Self {
            inner: Arc::new(Manual {
                now: watch::Sender::new(start),
                waits,
            }),
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
        self.inner.now.send_modify(|now| *now += by);
        self.inner.skip_if_idle();
    }

    /// Sets the clock to `to` (a later time, for timers to fire; an earlier one is allowed
    /// and fires nothing).
    pub fn set(&self, to: SystemTime) {
        self.inner.now.send_replace(to);
        self.inner.skip_if_idle();
    }
}

impl Manual {
    fn waits(&self) -> Option<std::sync::MutexGuard<'_, Waits>> {
        let waits = self.waits.as_ref()?;
        Some(waits.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn skip_if_idle(&self) {
        if let Some(mut waits) = self.waits() {
            self.skip(&mut waits);
        }
    }

    /// Jumps to the earliest sleep's deadline if nothing is in hand: no work, and no sleep
    /// whose deadline has passed still undelivered.
    fn skip(&self, waits: &mut Waits) {
        if waits.busy > 0 {
            return;
        }
        let Some((&(earliest, _), ())) = waits.sleeps.first_key_value() else {
            return;
        };
        self.now.send_if_modified(|now| {
            let later = earliest > *now;
            if later {
                *now = earliest;
            }
            later
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.inner.now.borrow()
    }

    fn sleep_until(&self, deadline: SystemTime) -> BoxFuture<()> {
        let mut now = self.inner.now.subscribe();
        let wait: BoxFuture<()> = Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, so is every reader.
            let _ = now.wait_for(|now| *now >= deadline).await;
        });
        let Some(mut waits) = self.inner.waits() else {
            return wait;
        };
        // Registered now, not when first polled: the clock must not skip past a timer
        // that is armed but whose task has not run yet.
        let key = (deadline, waits.next_sleep);
        waits.next_sleep += 1;
        waits.sleeps.insert(key, ());
        self.inner.skip(&mut waits);
        drop(waits);
        Box::pin(Sleep {
            wait,
            clock: self.inner.clone(),
            key,
        })
    }

    fn work_began(&self) {
        if let Some(mut waits) = self.inner.waits() {
            waits.busy += 1;
        }
    }

    fn work_done(&self) {
        if let Some(mut waits) = self.inner.waits() {
            waits.busy = waits.busy.saturating_sub(1);
            self.inner.skip(&mut waits);
        }
    }
}

/// A sleep on a time-skipping clock: counted from its creation until it is dropped, so a
/// timer that fired counts as work until whoever waited on it has handed it on.
struct Sleep {
    wait: BoxFuture<()>,
    clock: Arc<Manual>,
    key: (SystemTime, u64),
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.wait.as_mut().poll(cx)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(mut waits) = self.clock.waits() {
            waits.sleeps.remove(&self.key);
            self.clock.skip(&mut waits);
        }
    }
}

/// `time` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn a_skipping_clock_moves_to_each_timer_once_the_one_before_is_let_go() {
        let clock = ManualClock::time_skipping(at(10));
        let mut first = clock.sleep_until(at(11));
        let second = clock.sleep_until(at(12));
        // Nothing else to do: it jumped to the first timer, which holds it there.
        assert_eq!(clock.now(), at(11));
        (&mut first).await;
        assert_eq!(clock.now(), at(11), "a fired timer not yet let go is work");
        drop(first);
        assert_eq!(clock.now(), at(12));
        second.await;
    }

    #[tokio::test]
    async fn a_skipping_clock_holds_still_while_work_is_in_hand() {
        let clock = ManualClock::time_skipping(at(10));
        clock.work_began();
        let timer = clock.sleep_until(at(20));
        assert_eq!(clock.now(), at(10));
        clock.work_done();
        assert_eq!(clock.now(), at(20));
        timer.await;
    }

    #[test]
    fn a_plain_manual_clock_never_moves_by_itself() {
        let clock = ManualClock::new(at(10));
        let timer = clock.sleep_until(at(20));
        clock.work_done();
        assert_eq!(clock.now(), at(10));
        drop(timer);
    }
}
