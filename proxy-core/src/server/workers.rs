//! Thread-per-core workers: `N` threads, each running its own single-threaded tokio
//! runtime with its own accept loops ([`Server`](super::Server) spawns one per listener on
//! every worker), its own connections and its own share of each endpoint's HTTP/1.1 pool
//! ([`current`] picks the share). A request is served start to finish on the thread that
//! accepted its connection: no work stealing, no cross-thread wake-ups, no lock shared
//! with another worker on the request path.
//!
//! Background work (health checks, outlier detection's review, DNS discovery, idle
//! pruning, TLS reloads) and the signal handling run on the start-up thread's own
//! runtime, off the workers.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// This thread's worker index; 0 on any thread that is not a worker.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Workers the process runs (1 until [`set_count`]); sizes per-worker state built after
/// it, such as each endpoint's pool shards.
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// The index of the worker running the caller, in `0..count()`; 0 outside workers (a
/// multi-threaded runtime, tests, background tasks).
#[inline]
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

/// How many workers per-worker state is split into.
pub(crate) fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Sets [`count`]; called once at start-up, before the topology (and its pools) is
/// built.
pub(crate) fn set_count(workers: usize) {
    COUNT.store(workers.max(1), Ordering::Relaxed);
}

/// The name of every worker thread (what `--concurrency` counts).
pub(crate) const THREAD_NAME: &str = "proxy-worker";

/// Running worker threads. Dropping this without [`Workers::stop`] leaves them running
/// until the process exits.
#[derive(Debug)]
pub struct Workers {
    handles: Arc<[Handle]>,
    threads: Vec<(std::thread::JoinHandle<()>, oneshot::Sender<()>)>,
}

impl Workers {
    /// Starts `n` workers (at least one), each with a current-thread runtime (I/O and
    /// time enabled), and waits until every runtime is up.
    pub fn start(n: usize) -> io::Result<Self> {
        let mut handles = Vec::with_capacity(n.max(1));
        let mut threads = Vec::with_capacity(n.max(1));
        for index in 0..n.max(1) {
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    INDEX.with(|cell| cell.set(index));
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        // Blocking-pool threads are not workers: they must not count as one.
                        .thread_name("proxy-blocking")
                        .build();
                    match runtime {
                        Ok(runtime) => {
                            let _ = ready_tx.send(Ok(runtime.handle().clone()));
                            // Tasks run while the thread is in `block_on`; returning drops
                            // the runtime and every task still on it.
                            let _ = runtime.block_on(stop_rx);
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                        }
                    }
                })?;
            let handle = ready_rx
                .recv()
                .map_err(|_| io::Error::other("worker thread exited during start-up"))??;
            handles.push(handle);
            threads.push((thread, stop_tx));
        }
        Ok(Self {
            handles: handles.into(),
            threads,
        })
    }

    /// Each worker's runtime, by worker index.
    pub fn handles(&self) -> Arc<[Handle]> {
        Arc::clone(&self.handles)
    }

    /// Stops every worker: tasks still on their runtimes are dropped. Call after the
    /// server has drained.
    pub fn stop(self) {
        for (thread, stop) in self.threads {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
