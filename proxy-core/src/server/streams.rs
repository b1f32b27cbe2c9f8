//! HTTP/2 streams served on their connection's task.
//!
//! hyper hands each HTTP/2 stream's future to its executor, and tokio's made every stream
//! a task of its own: an allocation, an entry in the runtime's task list (behind a
//! lock), a trip through the run queue, and the same again to retire it — ≈ 2.5k of an
//! h2c request's 43k instructions (measured, `h2load -m 10`). [`StreamExecutor`] keeps
//! the streams of a connection run by [`OnConnectionTask`] in that connection's task
//! instead: a stream is first polled right after the connection poll that accepted it,
//! and a stream woken later (its upstream answered) is polled before the connection, so
//! the frames it queued go out in that same connection poll.
//!
//! A stream that panics is dropped alone, as a task of its own would be; its connection
//! and its other streams go on.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// An [`OnConnectionTask`] is being polled on this thread (workers are
    /// single-threaded, and a task's poll never nests another task's).
    static POLLING: Cell<bool> = const { Cell::new(false) };
    /// The streams its connection started meanwhile.
    static STARTED: RefCell<Vec<StreamFuture>> = const { RefCell::new(Vec::new()) };
}

/// hyper's executor for server connections: a future started while an
/// [`OnConnectionTask`] is polled runs on that task; anywhere else (a connection served
/// without one) it is spawned on the runtime.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        if POLLING.get() {
            STARTED.with_borrow_mut(|started| started.push(Box::pin(future)));
        } else {
            tokio::spawn(future);
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection future that also runs the streams it starts; it ends when the
    /// connection and all of its streams have.
    pub(crate) struct OnConnectionTask<C: Future> {
        #[pin]
        connection: C,
        output: Option<C::Output>,
        streams: Streams,
    }
}

impl<C: Future> OnConnectionTask<C> {
    pub(crate) fn new(connection: C) -> Self {
        Self {
            connection,
            output: None,
            streams: Streams::default(),
        }
    }
}

impl<C: Future> Future for OnConnectionTask<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.project();
        let streams = this.streams;
        let _polling = Polling::start();
        // Woken since the last poll: the frames they queue leave with this connection
        // poll.
        streams.begin(cx.waker());
        streams.poll_due();
        if this.output.is_none()
            && let Poll::Ready(output) = this.connection.poll(cx)
        {
            *this.output = Some(output);
        }
        // Started by the connection poll (a new request), or woken by it (flow control).
        streams.admit_started();
        streams.collect_due();
        streams.poll_due();
        // Started by the streams just polled (an upgrade's pipe): due next time.
        streams.admit_started();
        streams.end();
        match this.output.take() {
            Some(output) if streams.live == 0 => Poll::Ready(output),
            kept => {
                *this.output = kept;
                Poll::Pending
            }
        }
    }
}

/// Marks this thread's [`OnConnectionTask`] poll, until dropped — also by a panic, when
/// futures its connection started are dropped with it rather than left to the next
/// connection polled here.
struct Polling;

impl Polling {
    fn start() -> Self {
        POLLING.set(true);
        Self
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.set(false);
        let orphans = STARTED.take();
        drop(orphans);
    }
}

/// The streams of one connection, in reusable slots.
#[derive(Default)]
struct Streams {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    ready: Arc<Ready>,
    /// Slots to poll now (swapped with `ready`'s list, both keep their capacity).
    due: Vec<usize>,
    /// Swapped with [`STARTED`] to admit the streams started there.
    started: Vec<StreamFuture>,
}

struct Slot {
    future: Option<StreamFuture>,
    waker: Waker,
    wake: Arc<SlotWake>,
}

#[derive(Default)]
struct Ready {
    state: Mutex<ReadyState>,
}

#[derive(Default)]
struct ReadyState {
    slots: Vec<usize>,
    task: Option<Waker>,
    /// The connection's task is being polled: it will look at `slots` before it returns,
    /// so a wake then need not wake the task again.
    polling: bool,
}

impl Ready {
    fn lock(&self) -> MutexGuard<'_, ReadyState> {
        // The state is a list of indices and a waker: consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct SlotWake {
    index: usize,
    /// In `Ready::slots` already: further wakes before its poll are one.
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let task = {
            let mut state = self.ready.lock();
            state.slots.push(self.index);
            if state.polling {
                None
            } else {
                state.task.clone()
            }
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Streams {
    fn begin(&mut self, task: &Waker) {
        let mut state = self.ready.lock();
        state.polling = true;
        if !state
            .task
            .as_ref()
            .is_some_and(|known| known.will_wake(task))
        {
            state.task = Some(task.clone());
        }
        std::mem::swap(&mut state.slots, &mut self.due);
    }

    fn collect_due(&mut self) {
        let mut state = self.ready.lock();
        self.due.append(&mut state.slots);
    }

    fn end(&mut self) {
        let mut state = self.ready.lock();
        state.polling = false;
        if !state.slots.is_empty()
            && let Some(task) = &state.task
        {
            task.wake_by_ref();
        }
    }

    /// Gives each started stream a slot and marks it due: a stream is first polled by
    /// the task poll that started it.
    fn admit_started(&mut self) {
        STARTED.with_borrow_mut(|started| std::mem::swap(started, &mut self.started));
        let mut started = std::mem::take(&mut self.started);
        for future in started.drain(..) {
            let index = self.free.pop().unwrap_or_else(|| self.new_slot());
            let slot = &mut self.slots[index];
            slot.future = Some(future);
            slot.wake.queued.store(true, Ordering::Release);
            self.live += 1;
            self.due.push(index);
        }
        self.started = started;
    }

    fn new_slot(&mut self) -> usize {
        let index = self.slots.len();
        let wake = Arc::new(SlotWake {
            index,
            queued: AtomicBool::new(false),
            ready: Arc::clone(&self.ready),
        });
        self.slots.push(Slot {
            future: None,
            waker: Waker::from(Arc::clone(&wake)),
            wake,
        });
        index
    }

    fn poll_due(&mut self) {
        let mut due = std::mem::take(&mut self.due);
        for &index in &due {
            let Some(slot) = self.slots.get_mut(index) else {
                continue;
            };
            // A wake during the poll queues the stream again.
            slot.wake.queued.store(false, Ordering::Release);
            let Some(future) = slot.future.as_mut() else {
                // Woken after it finished (a waker can outlive its stream).
                continue;
            };
            let mut cx = Context::from_waker(&slot.waker);
            let finished = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
                Ok(poll) => poll.is_ready(),
                Err(_) => {
                    tracing::error!("an HTTP/2 stream panicked; it is dropped");
                    true
                }
            };
            if finished {
                slot.future = None;
                self.free.push(index);
                self.live -= 1;
            }
        }
        due.clear();
        self.due = due;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use hyper::rt::Executor;
    use tokio::sync::oneshot;

    use super::*;

    /// A connection that starts one stream per receiver on its first poll, then ends.
    fn connection_starting(
        streams: Vec<(oneshot::Receiver<()>, Arc<AtomicUsize>)>,
    ) -> impl Future<Output = &'static str> {
        let mut streams = Some(streams);
        std::future::poll_fn(move |_| {
            for (answer, done) in streams.take().into_iter().flatten() {
                StreamExecutor.execute(async move {
                    let _ = answer.await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            Poll::Ready("connection over")
        })
    }

    #[tokio::test]
    async fn streams_run_on_the_connection_task_which_waits_for_them() {
        let done = Arc::new(AtomicUsize::new(0));
        let (answers, receivers): (Vec<_>, Vec<_>) = (0..3)
            .map(|_| {
                let (send, receive) = oneshot::channel();
                (send, (receive, Arc::clone(&done)))
            })
            .unzip();
        let mut task = Box::pin(OnConnectionTask::new(connection_starting(receivers)));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        // The connection is over, its streams are not: the task goes on.
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(task.streams.live, 3);
        // Nothing was spawned on the runtime: the streams live in the task.
        let metrics = tokio::runtime::Handle::current().metrics();
        assert_eq!(metrics.num_alive_tasks(), 0);
        let mut answers = answers.into_iter();
        for answered in 1..=3 {
            let _ = answers.next().map(|answer| answer.send(()));
            let poll = task.as_mut().poll(&mut cx);
            assert_eq!(done.load(Ordering::SeqCst), answered);
            assert_eq!(poll.is_ready(), answered == 3);
        }
    }

    #[tokio::test]
    async fn a_woken_stream_wakes_its_connection_task() {
        let done = Arc::new(AtomicUsize::new(0));
        let (answer, receive) = oneshot::channel();
        let task = OnConnectionTask::new(connection_starting(vec![(receive, Arc::clone(&done))]));
        let running = tokio::spawn(task);
        tokio::task::yield_now().await;
        assert!(!running.is_finished());
        let _ = answer.send(());
        let output = tokio::time::timeout(Duration::from_secs(10), running).await;
        assert!(matches!(output, Ok(Ok("connection over"))));
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_stream_is_dropped_alone() {
        let survived = Arc::new(AtomicUsize::new(0));
        let witness = Arc::clone(&survived);
        let mut started = false;
        let connection = std::future::poll_fn(move |_| {
            if !std::mem::replace(&mut started, true) {
                StreamExecutor.execute(async { panic!("a stream's bug") });
                let witness = Arc::clone(&witness);
                StreamExecutor.execute(async move {
                    tokio::task::yield_now().await;
                    witness.fetch_add(1, Ordering::SeqCst);
                });
            }
            Poll::Ready(())
        });
        let running = tokio::spawn(OnConnectionTask::new(connection));
        let output = tokio::time::timeout(Duration::from_secs(10), running).await;
        assert!(matches!(output, Ok(Ok(()))));
        assert_eq!(survived.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn futures_started_elsewhere_are_spawned() {
        let (send, receive) = oneshot::channel();
        StreamExecutor.execute(async move {
            let _ = send.send("spawned");
        });
        let answer = tokio::time::timeout(Duration::from_secs(10), receive).await;
        assert!(matches!(answer, Ok(Ok("spawned"))));
    }

    #[test]
    fn slots_are_reused() {
        let mut streams = Streams::default();
        for _ in 0..3 {
            let _polling = Polling::start();
            StreamExecutor.execute(std::future::ready(()));
            StreamExecutor.execute(std::future::ready(()));
            streams.admit_started();
            streams.poll_due();
            assert_eq!(streams.live, 0);
        }
        assert_eq!(streams.slots.len(), 2);
    }
}
