//! Serving: one accept loop per listener (per worker, see [`workers`]), one task per
//! connection, and graceful drain.

pub(crate) mod h1;
mod h2_date;
mod reuse;
mod streams;
mod workers;

pub(crate) use workers::{THREAD_NAME as WORKER_THREAD_NAME, set_count as set_worker_count};
pub(crate) use workers::{Workers, count as worker_count, current as current_worker};

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::BindAddress;
use crate::http::{Downstream, IncomingBody};
use crate::listener::{BindError, BoundListener, HttpOptions, ListenerConfig};
use crate::net::{Rewound, Stream};
use crate::route::Pipeline;
use crate::stats::{GaugeGuard, ListenerStats, TlsStats};
use crate::tls::{ServerTls, TlsSession};
use reuse::Handler;
use streams::{OnConnectionTask, StreamExecutor};

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listener `{listener}`: {source}")]
    Bind {
        listener: &'static str,
        #[source]
        source: BindError,
    },
}

/// Server-wide settings from the command line.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// After SIGTERM/SIGINT, how long in-flight requests may take before connections are
    /// closed regardless.
    pub drain_timeout: Duration,
    /// Time allowed for a client to send a complete HTTP/1.1 request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Which HTTP/1.1 implementation serves downstream connections.
    pub http1: Http1Codec,
}

/// The downstream HTTP/1.1 implementation. HTTP/2 is always hyper's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Http1Codec {
    /// This crate's own, over `httparse` (`server::h1`): one task per connection that
    /// parses, calls the pipeline and writes the response itself.
    #[default]
    Native,
    /// hyper's server connection: the reference implementation, kept for comparison.
    Hyper,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            http1: Http1Codec::default(),
        }
    }
}

/// Owns the listeners of a running proxy.
#[derive(Debug)]
pub struct Server {
    // Crate-visible so other listener kinds (e.g. `tcp`) add their own `impl Server`
    // blocks next to their code instead of growing this file.
    pub(crate) settings: ServerSettings,
    /// Flips to `true` once: every accept loop stops accepting and drains.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Accept loops; `shutdown` awaits each (they finish after draining).
    pub(crate) accept_loops: Vec<JoinHandle<()>>,
    pub(crate) background: Vec<JoinHandle<()>>,
    /// Unix socket files this server created, removed at shutdown.
    pub(crate) socket_paths: Vec<PathBuf>,
    listener_stats: Vec<(&'static str, Arc<ListenerStats>)>,
    tls_stats: Vec<(&'static str, Arc<TlsStats>)>,
    tls_configs: Vec<Arc<ServerTls>>,
    /// The workers' runtimes: each listener gets one accept loop on each. Empty: one
    /// accept loop per listener on the current runtime.
    workers: Arc<[Handle]>,
}

impl Server {
    /// A server with no listeners yet. Generated proxies get one from [`App`](crate::App);
    /// embedders and tests may drive one directly inside a tokio runtime.
    pub fn new(settings: ServerSettings) -> Self {
        Self {
            settings,
            shutdown: watch::Sender::new(false),
            accept_loops: Vec::new(),
            background: Vec::new(),
            socket_paths: Vec::new(),
            listener_stats: Vec::new(),
            tls_stats: Vec::new(),
            tls_configs: Vec::new(),
            workers: Arc::new([]),
        }
    }

    /// A server whose listeners are each served by one accept loop per worker runtime
    /// in `workers` (thread-per-core; see [`Workers`]). Background tasks still run on
    /// the runtime the server is driven from.
    pub(crate) fn with_workers(settings: ServerSettings, workers: Arc<[Handle]>) -> Self {
        Self {
            workers,
            ..Self::new(settings)
        }
    }

    /// Binds `listener` and serves HTTP/1.1 and HTTP/2 (prior knowledge) on it through
    /// `pipeline`. Must run inside the runtime; a bind failure is returned, not logged.
    /// Returns the address actually bound (the real port when `:0` was asked for).
    ///
    /// With [`ListenerConfig::tls`], every connection first completes a TLS handshake
    /// in its own task (ALPN then picks HTTP/2 or HTTP/1.1), and the TLS configuration's
    /// file watch is started here, to run until shutdown.
    pub fn http<P: Pipeline>(
        &mut self,
        listener: &ListenerConfig,
        pipeline: &'static P,
    ) -> Result<BindAddress, ServeError> {
        let (bound, address) = self.bind(listener)?;
        let tls = listener.tls_config().map(|config| {
            let stats = Arc::new(TlsStats::default());
            self.tls_stats.push((listener.name(), Arc::clone(&stats)));
            self.tls_configs.push(Arc::clone(config));
            if config.start_watching() {
                self.spawn_background(Arc::clone(config).watch());
            }
            Arc::new(Terminate {
                config: Arc::clone(config),
                stats,
            })
        });
        tracing::info!(listener = listener.name(), %address, tls = tls.is_some(), "listening");
        let stats = Arc::new(ListenerStats::default());
        self.listener_stats
            .push((listener.name(), Arc::clone(&stats)));
        let manager = Manager {
            name: listener.name(),
            options: listener.http(),
        };
        let settings = self.settings;
        self.spawn_accept_loops(bound, |bound, shutdown| {
            accept_loop(
                bound,
                pipeline,
                manager,
                Arc::clone(&stats),
                tls.clone(),
                shutdown,
                settings,
            )
        });
        Ok(address)
    }

    /// Binds `listener` for any listener kind: one socket per accept loop (see
    /// [`BoundListener::bind_workers`]), a Unix socket file registered for removal at
    /// shutdown. Returns the address actually bound.
    pub(crate) fn bind(
        &mut self,
        listener: &ListenerConfig,
    ) -> Result<(Vec<BoundListener>, BindAddress), ServeError> {
        let bound =
            BoundListener::bind_workers(listener, self.workers.len()).map_err(|source| {
                ServeError::Bind {
                    listener: listener.name(),
                    source,
                }
            })?;
        let first = &bound[0];
        if let Some(path) = first.unix_path() {
            self.socket_paths.push(path.to_path_buf());
        }
        let address = first.local_address(listener.bind_address());
        Ok((bound, address))
    }

    /// Spawns `accept_loop(socket, shutdown)` for each of `bound`: on the current runtime,
    /// or one on each worker's runtime. `shutdown` flips once to stop accepting and drain.
    pub(crate) fn spawn_accept_loops<F>(
        &mut self,
        bound: Vec<BoundListener>,
        accept_loop: impl Fn(BoundListener, watch::Receiver<bool>) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.workers.is_empty() {
            for socket in bound {
                let task = accept_loop(socket, self.shutdown.subscribe());
                self.accept_loops.push(tokio::spawn(task));
            }
            return;
        }
        for (socket, worker) in bound.into_iter().zip(self.workers.iter()) {
            let task = accept_loop(socket, self.shutdown.subscribe());
            self.accept_loops.push(worker.spawn(task));
        }
    }

    /// Runs `task` until shutdown; for periodic work off the request path.
    pub(crate) fn spawn_background(
        &mut self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.background.push(tokio::spawn(task));
    }

    /// Per-listener counters, in bind order.
    pub fn listener_stats(&self) -> &[(&'static str, Arc<ListenerStats>)] {
        &self.listener_stats
    }

    /// TLS handshake counters of each TLS listener (`listener.<name>.ssl.*`), in bind
    /// order.
    pub fn tls_stats(&self) -> &[(&'static str, Arc<TlsStats>)] {
        &self.tls_stats
    }

    /// Envoy's `server.days_until_first_cert_expiring` over this server's TLS
    /// listeners; `None` without any. Computed from the certificates in use now.
    pub fn days_until_first_cert_expiring(&self) -> Option<i64> {
        self.tls_configs
            .iter()
            .map(|tls| tls.days_until_first_cert_expiring())
            .min()
    }

    /// Stops accepting, lets in-flight requests finish within the drain timeout, then
    /// removes the Unix socket files this server created.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for accept in self.accept_loops {
            let _ = accept.await;
        }
        for task in self.background {
            task.abort();
        }
        for path in &self.socket_paths {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %error, "could not remove socket file");
            }
        }
    }
}

/// A listener's TLS termination: its configuration and its handshake counters.
struct Terminate {
    config: Arc<ServerTls>,
    stats: Arc<TlsStats>,
}

/// An HTTP listener's connection manager as each of its connections sees it.
#[derive(Debug, Clone, Copy)]
struct Manager {
    name: &'static str,
    options: HttpOptions,
}

impl Manager {
    fn downstream(self, peer: Option<std::net::IpAddr>, stats: &Arc<ListenerStats>) -> Downstream {
        Downstream::of_listener(peer, self.name, self.options, Arc::clone(stats))
    }
}

async fn accept_loop<P: Pipeline>(
    listener: BoundListener,
    pipeline: &'static P,
    manager: Manager,
    stats: Arc<ListenerStats>,
    tls: Option<Arc<Terminate>>,
    mut shutdown: watch::Receiver<bool>,
    settings: ServerSettings,
) {
    let listener = match listener.into_acceptor() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listener = manager.name, %error, "cannot register the listening socket");
            return;
        }
    };
    let mut builder = auto::Builder::new(StreamExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // Head and body in one buffer, one `write`: cheaper than queueing them for a
        // vectored write for the small responses that dominate (measured, see
        // docs/architecture.md "Worker model").
        .writev(false);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Native HTTP/1.1 connections each hold a receiver: the drain waits for none to be
    // left (hyper's connections are counted by `graceful`).
    let native = watch::Sender::new(());

    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or memory: the error repeats until something
                // closes, so back off instead of spinning a core.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let stats = Arc::clone(&stats);
        let watcher = graceful.watcher();
        let Some(tls) = &tls else {
            let downstream = Arc::new(manager.downstream(peer, &stats));
            if settings.http1 == Http1Codec::Native {
                let builder = Arc::clone(&builder);
                let drain = shutdown.clone();
                let alive = native.subscribe();
                tokio::spawn(async move {
                    stats.downstream_cx_total.inc();
                    let _active = GaugeGuard::new(&stats.downstream_cx_active);
                    let native = Native {
                        builder: &builder,
                        watcher,
                        settings,
                        drain,
                    };
                    // HTTP/1.1 is served here rather than inside `sniff`: a layer of
                    // async fn per step would add its arguments to every connection's
                    // task again.
                    if let Some((stream, prefix, drain)) =
                        native.sniff(stream, &downstream, pipeline).await
                    {
                        let timeout = settings.header_read_timeout;
                        h1::serve(stream, prefix, downstream, None, pipeline, timeout, drain).await;
                    }
                    drop(alive);
                });
                continue;
            }
            let stream = Rewound::new(BytesMut::new(), stream);
            let connection = serve_connection(&builder, stream, downstream, None, pipeline);
            tokio::spawn(async move {
                stats.downstream_cx_total.inc();
                let _active = GaugeGuard::new(&stats.downstream_cx_active);
                if let Err(error) = OnConnectionTask::new(watcher.watch(connection)).await {
                    tracing::debug!(%error, "downstream connection error");
                }
            });
            continue;
        };
        // The handshake takes round trips (and a slow or silent client up to the
        // handshake timeout), so it runs in the connection's task, never here.
        let tls = Arc::clone(tls);
        let builder = Arc::clone(&builder);
        let mut draining = shutdown.clone();
        let alive = native.subscribe();
        tokio::spawn(async move {
            stats.downstream_cx_total.inc();
            let _active = GaugeGuard::new(&stats.downstream_cx_active);
            let handshake = tokio::select! {
                biased;
                // Draining: a connection that has not finished its handshake carries no
                // request yet, so it is dropped rather than waited for.
                _ = draining.changed() => return,
                handshake = tls.config.accept(stream, &tls.stats) => handshake,
            };
            let Some((stream, session)) = handshake else {
                return;
            };
            let mut downstream = manager.downstream(peer, &stats);
            downstream.scheme = "https";
            let downstream = Arc::new(downstream);
            let session = Arc::new(session);
            if settings.http1 == Http1Codec::Native && session.alpn() != Some(b"h2") {
                // Native connections are tracked by `alive`, not by hyper's watcher.
                drop(watcher);
                let _alive = alive;
                let timeout = settings.header_read_timeout;
                let prefix = BytesMut::new();
                h1::serve(
                    stream,
                    prefix,
                    downstream,
                    Some(session),
                    pipeline,
                    timeout,
                    draining,
                )
                .await;
                return;
            }
            let stream = Rewound::new(BytesMut::new(), stream);
            let connection =
                serve_connection(&builder, stream, downstream, Some(session), pipeline);
            if let Err(error) = OnConnectionTask::new(watcher.watch(connection)).await {
                tracing::debug!(%error, "downstream connection error");
            }
        });
    }

    // Closing the listening socket first makes new clients fail fast (or go to another
    // instance) instead of queueing in the backlog of a proxy that is going away.
    drop(listener);
    let drained = async {
        tokio::join!(graceful.shutdown(), native.closed());
    };
    if tokio::time::timeout(settings.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?settings.drain_timeout, "drain timeout reached; closing remaining connections");
    }
}

/// What a native-codec connection needs besides its stream: hyper's builder for an
/// HTTP/2 connection, the graceful-shutdown watcher for one, and the drain signal.
struct Native<'a> {
    builder: &'a auto::Builder<StreamExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    settings: ServerSettings,
    drain: watch::Receiver<bool>,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4): a client with prior knowledge sends it
/// first; no HTTP/1.1 request line starts with it.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Native<'_> {
    /// A plaintext connection: HTTP/2 with prior knowledge is served here, by hyper. An
    /// HTTP/1.1 one is handed back for the native codec, with what was read to tell them
    /// apart and the drain signal; `None` once the connection is over.
    async fn sniff<P: Pipeline>(
        mut self,
        mut stream: Stream,
        downstream: &Arc<Downstream>,
        pipeline: &'static P,
    ) -> Option<(Stream, BytesMut, watch::Receiver<bool>)> {
        let mut prefix = BytesMut::new();
        let sniff = async {
            use tokio::io::AsyncReadExt;
            // A connection that has sent nothing yet holds no buffer.
            if std::future::poll_fn(|cx| stream.poll_read_ready(cx))
                .await
                .is_err()
            {
                return false;
            }
            prefix = h1::read_buffer();
            // A request line differs from the preface within its first bytes, so this
            // is one read for nearly every HTTP/1.1 connection.
            while prefix.len() < HTTP2_PREFACE.len() && HTTP2_PREFACE.starts_with(&prefix) {
                if stream
                    .read_buf(&mut prefix)
                    .await
                    .ok()
                    .is_none_or(|n| n == 0)
                {
                    return false;
                }
            }
            true
        };
        let timeout = self.settings.header_read_timeout;
        let read = tokio::select! {
            read = tokio::time::timeout(timeout, sniff) => read.unwrap_or(false),
            _ = self.drain.wait_for(|draining| *draining) => false,
        };
        if !read {
            return None;
        }
        if prefix.starts_with(HTTP2_PREFACE) {
            let stream = Rewound::new(prefix, stream);
            let downstream = Arc::clone(downstream);
            let connection = serve_connection(self.builder, stream, downstream, None, pipeline);
            // Boxed: hyper's HTTP/2 connection is large, and inline it would size every
            // HTTP/1.1 connection's task too.
            if let Err(error) =
                Box::pin(OnConnectionTask::new(self.watcher.watch(connection))).await
            {
                tracing::debug!(%error, "downstream connection error");
            }
            return None;
        }
        // Native connections are tracked by `alive`, not by hyper's watcher.
        drop(self.watcher);
        Some((stream, prefix, self.drain))
    }
}

/// One downstream connection served by hyper's auto builder (HTTP/1.1, or HTTP/2 by
/// preface). Plaintext and TLS connections share this one instantiation: the transport
/// is the `Stream` enum and the TLS session an `Option`.
fn serve_connection<P: Pipeline>(
    builder: &auto::Builder<StreamExecutor>,
    stream: Rewound,
    downstream: Arc<Downstream>,
    session: Option<Arc<TlsSession>>,
    pipeline: &'static P,
) -> impl GracefulConnection<Error = Box<dyn std::error::Error + Send + Sync>> + Send + 'static {
    let accepted = std::time::Instant::now();
    // `downstream` is shared by every request on the connection: one `Arc` clone each.
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let http2 = request.version() == hyper::Version::HTTP_2;
        let downstream = Arc::clone(&downstream);
        if let Some(session) = &session {
            // Until `Downstream` carries the session itself, requests on a TLS
            // connection find it here (an `Arc` clone and an extensions insert).
            request.extensions_mut().insert(Arc::clone(session));
        }
        let request = request.map(IncomingBody::from);
        // hyper boxes a future per HTTP/2 stream holding this one (`streams.rs`): a lent
        // handler keeps it a few words instead of the whole exchange (≈ 3 KB to
        // allocate and copy).
        let mut handler = Handler::start(pipeline, request, downstream);
        async move {
            let mut response = std::future::poll_fn(|cx| handler.poll_response(cx)).await;
            handler.finished();
            if http2 {
                h2_date::keep_date_out_of_old_tables(&mut response, accepted);
            }
            Ok::<_, Infallible>(response)
        }
    });
    builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned()
}
