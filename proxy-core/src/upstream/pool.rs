use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;

use crate::http::RequestBody;

/// Idle HTTP/1.1 connections to one endpoint, most recently used first out.
///
/// LIFO keeps the hottest connections busy and lets the rest age out on `idle_timeout`,
/// so a burst does not leave many half-used connections behind. Critical sections are a
/// push or a pop, so a plain mutex is cheaper than anything lock-free here.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::new()),
                max_idle,
                idle_timeout,
            }),
        }
    }

    /// The most recently returned live connection, if any. Expired or closed ones met on
    /// the way are dropped, which closes them.
    pub(crate) fn checkout(&self) -> Option<http1::SendRequest<RequestBody>> {
        let now = Instant::now();
        let mut idle = self.shared.lock();
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() && now.duration_since(conn.since) < self.shared.idle_timeout
            {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Drops connections idle for longer than the timeout; run periodically so an idle
    /// proxy does not hold connections the origin already gave up on.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        let timeout = self.shared.idle_timeout;
        self.shared
            .lock()
            .retain(|conn| !conn.sender.is_closed() && now.duration_since(conn.since) < timeout);
    }

    /// Closes the least recently used idle connection, if there is one; returns whether
    /// one was closed. Its circuit-breaker slot frees once its connection task ends.
    pub(crate) fn evict_oldest(&self) -> bool {
        let mut idle = self.shared.lock();
        if idle.is_empty() {
            return false;
        }
        // Dropped outside the lock: closing a connection need not hold up checkouts.
        let oldest = idle.remove(0);
        drop(idle);
        drop(oldest);
        true
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.shared.lock().len()
    }

    /// A handle that puts `sender` back when the response it carried has ended.
    pub(crate) fn returner(&self, sender: http1::SendRequest<RequestBody>) -> PoolReturn {
        PoolReturn {
            sender,
            pool: self.clone(),
        }
    }

    fn put(&self, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.shared.lock();
        if idle.len() < self.shared.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // A panic while holding this lock cannot leave the Vec inconsistent (every
        // operation is a single push/pop/retain), so a poisoned lock is still usable.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
