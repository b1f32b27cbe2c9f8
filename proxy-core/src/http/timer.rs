//! The route timer a connection's requests share.
//!
//! tokio puts a timer in its wheel when it is first polled and takes it out when it is
//! dropped, and a timer due sooner than the runtime's next planned wake-up makes the
//! runtime wake itself through its eventfd, a system call. A worker that has gone idle
//! between two bursts plans its next wake-up from the connections' header timers (30 s),
//! so nearly every request's 15 s route timer did that: 0.5 `write`s per request,
//! measured, on top of the wheel's insert and remove.
//!
//! A connection's requests therefore share one `Sleep`. It is armed for the first
//! deadline and left alone while later requests' deadlines are no earlier (the usual
//! case: one timeout, later starts); when it fires before the current request's deadline
//! it is re-armed to that deadline, so a request still times out on time. Concurrent
//! requests of an HTTP/2 connection find it lent out and take another: the connection
//! keeps as many as its streams used at once, up to [`KEPT_TIMERS`] (a fresh timer per
//! stream cost an allocation, a wheel insert and a remove: 1.7k of an h2c request's
//! 45.7k instructions under `h2load -m 10`, measured).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;

use smallvec::SmallVec;
use tokio::time::{Instant, Sleep, sleep_until};

/// Timers an HTTP/2 connection keeps for its concurrent streams (each ≈ 100 bytes; an
/// HTTP/1.1 connection never holds more than one).
const KEPT_TIMERS: usize = 16;

type Timers = SmallVec<[Pin<Box<Sleep>>; 1]>;

#[derive(Debug, Default)]
pub(crate) struct RouteTimer(Mutex<Timers>);

impl RouteTimer {
    fn slot(&self) -> MutexGuard<'_, Timers> {
        // Nothing panics while the slot is held, so a poisoned lock is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `future`'s output, or `None` if `deadline` comes first.
    pub(crate) async fn limit<F: Future>(
        &self,
        deadline: Instant,
        mut future: Pin<&mut F>,
    ) -> Option<F::Output> {
        let mut lent = self.lend(deadline);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if lent.poll_expired(cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// The timer, armed for `deadline` at the latest, until the returned guard drops.
    pub(crate) fn lend(&self, deadline: Instant) -> Lent<'_> {
        let mut lent = Lent {
            owner: self,
            timer: self.slot().pop(),
            deadline,
        };
        let timer = lent
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        lent
    }
}

/// The route timer lent to one wait; given back when the wait ends, however it ends.
pub(crate) struct Lent<'a> {
    owner: &'a RouteTimer,
    timer: Option<Pin<Box<Sleep>>>,
    deadline: Instant,
}

impl Lent<'_> {
    /// Whether the deadline has passed; otherwise the task is woken when it does.
    pub(crate) fn poll_expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= self.deadline {
                return true;
            }
            timer.as_mut().reset(self.deadline);
        }
        false
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(timer) = self.timer.take() else {
            return;
        };
        let mut kept = self.owner.slot();
        if kept.len() < KEPT_TIMERS {
            kept.push(timer);
        } else {
            drop(kept);
            drop(timer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_later_request_is_timed_from_its_own_start() {
        let timer = RouteTimer::default();
        let start = Instant::now();
        let quick = std::pin::pin!(async { 1 });
        assert_eq!(
            timer.limit(start + Duration::from_secs(15), quick).await,
            Some(1)
        );

        // The shared timer is still armed for the first deadline; the second request's
        // deadline is 10 s later, and it must not time out at the first one.
        tokio::time::advance(Duration::from_secs(10)).await;
        let second_start = Instant::now();
        let slow = std::pin::pin!(tokio::time::sleep(Duration::from_secs(14)));
        assert_eq!(
            timer
                .limit(second_start + Duration::from_secs(15), slow)
                .await,
            Some(())
        );
        assert_eq!(Instant::now(), second_start + Duration::from_secs(14));

        let third_start = Instant::now();
        let never = std::pin::pin!(std::future::pending::<()>());
        assert_eq!(
            timer
                .limit(third_start + Duration::from_secs(15), never)
                .await,
            None
        );
        assert_eq!(Instant::now(), third_start + Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_re_arms_the_timer() {
        let timer = RouteTimer::default();
        let start = Instant::now();
        let quick = std::pin::pin!(async {});
        timer.limit(start + Duration::from_secs(15), quick).await;
        let never = std::pin::pin!(std::future::pending::<()>());
        assert_eq!(
            timer.limit(start + Duration::from_secs(1), never).await,
            None
        );
        assert_eq!(Instant::now(), start + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn timers_lent_at_once_are_kept_for_the_next_streams() {
        let timer = RouteTimer::default();
        let deadline = Instant::now() + Duration::from_secs(15);
        let kept = |timer: &RouteTimer| timer.0.lock().map(|kept| kept.len()).unwrap_or(0);

        let streams: Vec<_> = (0..3).map(|_| timer.lend(deadline)).collect();
        assert_eq!(kept(&timer), 0);
        drop(streams);
        assert_eq!(kept(&timer), 3);

        // The next burst takes the kept timers before making new ones.
        let streams: Vec<_> = (0..2).map(|_| timer.lend(deadline)).collect();
        assert_eq!(kept(&timer), 1);
        drop(streams);
        assert_eq!(kept(&timer), 3);

        let burst: Vec<_> = (0..KEPT_TIMERS + 5).map(|_| timer.lend(deadline)).collect();
        drop(burst);
        assert_eq!(kept(&timer), KEPT_TIMERS);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waits_each_keep_their_own_deadline() {
        let timer = RouteTimer::default();
        let start = Instant::now();
        let first = async {
            let never = std::pin::pin!(std::future::pending::<()>());
            timer.limit(start + Duration::from_secs(2), never).await
        };
        let second = async {
            let never = std::pin::pin!(std::future::pending::<()>());
            timer.limit(start + Duration::from_secs(5), never).await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!((first, second), (None, None));
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
    }
}
