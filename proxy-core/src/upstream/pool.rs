use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use super::h1::Connection;
use crate::server::{current_worker, worker_count};

/// Idle HTTP/1.1 connections to one endpoint, most recently used first out.
///
/// LIFO keeps the hottest connections busy and lets the rest age out on `idle_timeout`,
/// so a burst does not leave many half-used connections behind. Critical sections are a
/// push or a pop, so a plain mutex is cheaper than anything lock-free here.
///
/// One shard per worker (thread-per-core, see `server::workers`): a worker takes and
/// returns connections in its own shard, whose connections it dialled and drives, so its
/// mutex is never contended and a request never wakes another thread. `max_idle` holds
/// per shard (per worker, as Envoy's per-worker pools). Only a request waiting under
/// `max_connections` looks into other workers' shards ([`Pool::checkout_any`]).
///
/// No task watches an idle connection. Each is parked with its shard's waker
/// ([`Connection::park`]): when an origin closes one, the runtime's I/O driver wakes the
/// shard, which drops the closed ones there and then, as hyper's per-connection task
/// would have noticed the close.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    shards: Box<[Shard]>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// One worker's idle connections, on a cache line of its own so workers do not
/// invalidate each other's.
#[derive(Debug)]
#[repr(align(64))]
struct Shard {
    idle: Mutex<Vec<Idle>>,
    /// Wakes this shard's [`Reaper`]; cloned (a reference count) into every parking.
    reaper: Waker,
}

/// Drops a shard's closed idle connections when one of them turns readable.
#[derive(Debug)]
struct Reaper {
    shared: Weak<Shared>,
    shard: usize,
}

impl Wake for Reaper {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if let Some(shard) = shared.shards.get(self.shard) {
            shard.reap();
        }
    }
}

#[derive(Debug)]
struct Idle {
    conn: Box<Connection>,
    since: Instant,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        let shared = Arc::new_cyclic(|shared: &Weak<Shared>| Shared {
            shards: (0..worker_count().max(1))
                .map(|shard| Shard {
                    idle: Mutex::default(),
                    reaper: Waker::from(Arc::new(Reaper {
                        shared: shared.clone(),
                        shard,
                    })),
                })
                .collect(),
            max_idle,
            idle_timeout,
        });
        Self { shared }
    }

    /// The most recently returned live connection of this worker's shard, if any.
    /// Expired or closed ones met on the way are dropped, which closes them.
    pub(crate) fn checkout(&self) -> Option<Box<Connection>> {
        self.shared
            .local()
            .take(Instant::now(), self.shared.idle_timeout)
    }

    /// [`Self::checkout`], else a connection from another worker's shard: for a request
    /// waiting under `max_connections`, which must not wait on a connection idling
    /// elsewhere. The connection keeps running on the worker that dialled it.
    pub(crate) fn checkout_any(&self) -> Option<Box<Connection>> {
        let now = Instant::now();
        let timeout = self.shared.idle_timeout;
        self.checkout().or_else(|| {
            self.shared
                .shards
                .iter()
                .find_map(|shard| shard.take(now, timeout))
        })
    }

    /// Drops connections idle for longer than the timeout; run periodically so an idle
    /// proxy does not hold connections the origin already gave up on.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        let timeout = self.shared.idle_timeout;
        for shard in &self.shared.shards {
            shard.lock().retain(|idle| {
                now.duration_since(idle.since) < timeout && idle.conn.park(&shard.reaper)
            });
        }
    }

    /// Closes the least recently used idle connection, if there is one (this worker's
    /// first); returns whether one was closed. Its circuit-breaker slot frees once its
    /// connection task ends.
    pub(crate) fn evict_oldest(&self) -> bool {
        let local = self.shared.local();
        std::iter::once(local)
            .chain(self.shared.shards.iter())
            .any(Shard::evict_oldest)
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|shard| shard.lock().len())
            .sum()
    }

    /// Puts `conn` in the shard of the worker returning it: the one that took it out.
    /// Dropped instead (which closes it) when the shard is full.
    pub(crate) fn put(&self, conn: Box<Connection>) {
        let shard = self.shared.local();
        if !conn.park(&shard.reaper) {
            return;
        }
        let mut idle = shard.lock();
        if idle.len() < self.shared.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }
}

impl Shared {
    /// The calling worker's shard (the first outside workers).
    #[inline]
    fn local(&self) -> &Shard {
        let index = current_worker();
        // `shards` is never empty; an index past it (more workers than shards) shares
        // the first.
        self.shards.get(index).unwrap_or(&self.shards[0])
    }
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // A panic while holding this lock cannot leave the Vec inconsistent (every
        // operation is a single push/pop/retain), so a poisoned lock is still usable.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently parked connection still within its idle timeout.
    ///
    /// Not re-checked for a close: a parked connection's read readiness wakes the
    /// reaper, which runs inside the runtime's event dispatch (the waker is called
    /// there), so a connection the origin closed leaves the pool in the same driver
    /// turn that learns of it, before any task can check it out. Checking again here
    /// read the same readiness (and swapped the socket's waker twice) on every request.
    fn take(&self, now: Instant, timeout: Duration) -> Option<Box<Connection>> {
        let mut idle = self.lock();
        while let Some(conn) = idle.pop() {
            if now.duration_since(conn.since) < timeout {
                return Some(conn.conn);
            }
        }
        None
    }

    /// Drops the connections an origin closed (or that turned readable otherwise) and
    /// re-parks the rest.
    fn reap(&self) {
        self.lock().retain(|idle| idle.conn.park(&self.reaper));
    }

    fn evict_oldest(&self) -> bool {
        let mut idle = self.lock();
        if idle.is_empty() {
            return false;
        }
        // Dropped outside the lock: closing a connection need not hold up checkouts.
        let oldest = idle.remove(0);
        drop(idle);
        drop(oldest);
        true
    }
}
