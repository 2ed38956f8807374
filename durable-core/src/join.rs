//! Waiting on several durable operations: all of them (fan-out / fan-in), or the first
//! (a race, decided by history order so every replay picks the same winner).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::durable_future::{DurableFuture, Timer};
use crate::error::Timeout;
use crate::orchestration_context::OrchestrationContext;

/// One of two outcomes of [`OrchestrationContext::select2`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first operation finished first.
    Left(A),
    /// The second operation finished first.
    Right(B),
}

impl OrchestrationContext {
    /// Awaits every future and returns their outputs in input order. Schedule the
    /// operations first (every `ctx.call` is issued when it is made), then join them:
    ///
    /// ```
    /// use durable_core::{activity, orchestrator, ActivityContext, OrchestrationContext};
    ///
    /// #[activity]
    /// async fn measure(_ctx: ActivityContext, item: String) -> Result<usize, String> {
    ///     Ok(item.len())
    /// }
    ///
    /// #[orchestrator]
    /// async fn total(ctx: OrchestrationContext, items: Vec<String>) -> Result<usize, String> {
    ///     let calls = items.into_iter().map(|item| ctx.call(measure, item)).collect();
    ///     let mut sum = 0;
    ///     for result in ctx.join_all(calls).await {
    ///         sum += result?;
    ///     }
    ///     Ok(sum)
    /// }
    /// ```
    pub fn join_all<F: Future + Unpin>(&self, futures: Vec<F>) -> JoinAll<F> {
        JoinAll {
            outputs: futures.iter().map(|_| None).collect(),
            futures: futures.into_iter().map(Some).collect(),
        }
    }

    /// Awaits two futures of different types; outputs in argument order.
    pub async fn join2<A: Future, B: Future>(&self, a: A, b: B) -> (A::Output, B::Output) {
        let (mut a, mut b) = (Box::pin(a), Box::pin(b));
        let (mut ra, mut rb) = (None, None);
        std::future::poll_fn(|cx| {
            if ra.is_none()
                && let Poll::Ready(v) = a.as_mut().poll(cx)
            {
                ra = Some(v);
            }
            if rb.is_none()
                && let Poll::Ready(v) = b.as_mut().poll(cx)
            {
                rb = Some(v);
            }
            if ra.is_some() && rb.is_some() {
                Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Awaits three futures of different types; outputs in argument order.
    pub async fn join3<A: Future, B: Future, C: Future>(
        &self,
        a: A,
        b: B,
        c: C,
    ) -> (A::Output, B::Output, C::Output) {
        let ((a, b), c) = self.join2(self.join2(a, b), c).await;
        (a, b, c)
    }

    /// Awaits the first of several durable operations to finish and returns its index
    /// and output. The winner is the one whose result the history received first, so a
    /// replay picks the same one; the others are dropped (an activity still runs, its
    /// result ignored).
    pub fn when_any<F: DurableFuture>(&self, futures: Vec<F>) -> WhenAny<F> {
        WhenAny { futures }
    }

    /// Awaits the first of two durable operations of different types.
    pub fn select2<A: DurableFuture, B: DurableFuture>(&self, a: A, b: B) -> Select2<A, B> {
        Select2 {
            inner: Some((a, b)),
        }
    }

    /// Awaits `future` for at most `duration` on a durable timer: `Err(Timeout)` if the
    /// timer fires first. The timeout survives restarts like any timer.
    #[track_caller]
    pub fn timeout<F: DurableFuture>(
        &self,
        duration: Duration,
        future: F,
    ) -> impl Future<Output = Result<F::Output, Timeout>> + use<F> {
        let timer: Timer = self.sleep(duration);
        let race = self.select2(future, timer);
        async move {
            match race.await {
                Either::Left(output) => Ok(output),
                Either::Right(()) => Err(Timeout { after: duration }),
            }
        }
    }
}

/// The future of [`OrchestrationContext::join_all`].
#[derive(Debug)]
#[must_use = "a join does nothing unless awaited"]
pub struct JoinAll<F: Future> {
    futures: Vec<Option<F>>,
    outputs: Vec<Option<F::Output>>,
}

// The outputs are only stored, never pinned; the futures are `Unpin` themselves.
impl<F: Future> Unpin for JoinAll<F> {}

impl<F: Future + Unpin> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut pending = false;
        for (slot, output) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if let Some(future) = slot {
                match Pin::new(future).poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(
            this.outputs
                .iter_mut()
                .map(|o| o.take().expect("every output is in"))
                .collect(),
        )
    }
}

/// The future of [`OrchestrationContext::when_any`].
#[derive(Debug)]
#[must_use = "a race does nothing unless awaited"]
pub struct WhenAny<F> {
    futures: Vec<F>,
}

impl<F: DurableFuture> Future for WhenAny<F> {
    type Output = (usize, F::Output);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let winner = self
            .futures
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.ready_at().map(|at| (at, i)))
            .min();
        let Some((_, index)) = winner else {
            return Poll::Pending;
        };
        match Pin::new(&mut self.futures[index]).poll(cx) {
            Poll::Ready(output) => {
                // The losers are dropped now, in program order, so a replay drops them alike.
                self.futures.clear();
                Poll::Ready((index, output))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The future of [`OrchestrationContext::select2`].
#[derive(Debug)]
#[must_use = "a race does nothing unless awaited"]
pub struct Select2<A, B> {
    inner: Option<(A, B)>,
}

impl<A: DurableFuture, B: DurableFuture> Future for Select2<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((a, b)) = self.inner.as_mut() else {
            return Poll::Pending;
        };
        let left_first = match (a.ready_at(), b.ready_at()) {
            (None, None) => return Poll::Pending,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x <= y,
        };
        let output = if left_first {
            match Pin::new(a).poll(cx) {
                Poll::Ready(v) => Either::Left(v),
                Poll::Pending => return Poll::Pending,
            }
        } else {
            match Pin::new(b).poll(cx) {
                Poll::Ready(v) => Either::Right(v),
                Poll::Pending => return Poll::Pending,
            }
        };
        // The loser is dropped now, in program order, so a replay drops it alike.
        self.inner = None;
        Poll::Ready(output)
    }
}
