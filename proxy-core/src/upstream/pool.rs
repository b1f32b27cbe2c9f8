use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;

use crate::http::RequestBody;
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
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<Vec<Idle>>);

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        let shards = (0..worker_count().max(1))
            .map(|_| Shard::default())
            .collect();
        Self {
            shared: Arc::new(Shared {
                shards,
                max_idle,
                idle_timeout,
            }),
        }
    }

    /// The most recently returned live connection of this worker's shard, if any.
    /// Expired or closed ones met on the way are dropped, which closes them.
    pub(crate) fn checkout(&self) -> Option<http1::SendRequest<RequestBody>> {
        self.shared
            .local()
            .take(Instant::now(), self.shared.idle_timeout)
    }

    /// [`Self::checkout`], else a connection from another worker's shard: for a request
    /// waiting under `max_connections`, which must not wait on a connection idling
    /// elsewhere. The connection keeps running on the worker that dialled it.
    pub(crate) fn checkout_any(&self) -> Option<http1::SendRequest<RequestBody>> {
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
            shard.lock().retain(|conn| {
                !conn.sender.is_closed() && now.duration_since(conn.since) < timeout
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

    /// A handle that puts `sender` back when the response it carried has ended.
    pub(crate) fn returner(&self, sender: http1::SendRequest<RequestBody>) -> PoolReturn {
        PoolReturn {
            sender,
            pool: self.clone(),
        }
    }

    /// Puts `sender` in the shard of the worker returning it: the one that took it out.
    fn put(&self, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.shared.local().lock();
        if idle.len() < self.shared.max_idle {
            idle.push(Idle {
                sender,
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
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, now: Instant, timeout: Duration) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.lock();
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() && now.duration_since(conn.since) < timeout {
                return Some(conn.sender);
            }
        }
        None
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

/// Returns a connection to its pool. Held by the response body and released when the
/// body reaches its end; dropping it earlier (client went away mid-body) closes the
/// connection instead, because an HTTP/1.1 connection with an unread response cannot
/// carry another request.
#[derive(Debug)]
pub(crate) struct PoolReturn {
    sender: http1::SendRequest<RequestBody>,
    pool: Pool,
}

impl PoolReturn {
    pub(crate) fn release(self) {
        self.pool.put(self.sender);
    }
}
