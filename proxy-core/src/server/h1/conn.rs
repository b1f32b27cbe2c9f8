//! One native HTTP/1.1 connection: read a head, run the pipeline, write the response,
//! repeat.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::{Request, Response, StatusCode};
use tokio::io::AsyncWrite;
use tokio::sync::{oneshot, watch};
use tokio::time::Sleep;

use super::body::RequestStream;
use super::head::{self, Parsed, Refusal, RelayHead, RequestHead};
use super::relay::{self, Relayed};
use super::write::{self, Answering, BodyWriter};
use crate::http::{Downstream, IncomingBody, ResponseBody};
use crate::lent::Reading;
use crate::net::{Rewound, Stream};
use crate::route::Pipeline;
use crate::server::reuse::Handler;
use crate::tls::TlsSession;
use crate::upstream::h1::{Decoded, Decoder, Framing};

/// Read buffer while a request is in flight: its head (and a small body) in one read.
pub(super) const READ_BUFFER: usize = 8 * 1024;
/// A write buffer up to this size stays with its connection between requests.
const KEPT_WRITE_BUFFER: usize = 1024;
/// Body bytes of a request the proxy answered without reading them all that are still
/// read (and thrown away) to keep the connection; past this it is closed.
const DRAIN_LIMIT: usize = 64 * 1024;

/// What [`Io::poll_client`] saw.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Client {
    Quiet,
    /// Bytes arrived (and were buffered): whatever waits on them must be polled again.
    Sent,
    Gone,
}

/// How much a client may send ahead while its request is served.
const WATCH_LIMIT: usize = 64 * 1024;

/// The connection, shared by the task serving it and the body of the request in flight.
#[derive(Debug)]
pub(crate) struct Io {
    stream: Stream,
    pub(super) read_buf: BytesMut,
    pub(super) write_buf: Vec<u8>,
    /// What is left of the current request's body.
    pub(super) body: Decoder,
    /// Reading the current request's body failed: the connection cannot continue.
    pub(super) body_failed: bool,
    /// `100 Continue` owed to the client (bytes of it written so far), sent when the
    /// body is first read.
    continue_owed: Option<usize>,
    /// The task waiting for more of the request body, when the body is read by another
    /// task than the one serving the connection (an HTTP/2 upstream pipes it from its
    /// own). A socket wakes only the last task that polled it for reading, so when
    /// [`Io::poll_client`] polled after it, the bytes that arrive wake the connection's
    /// task, which buffers them and must pass the wake-up on.
    pub(super) body_waker: Option<Waker>,
    /// Which request's body a [`RequestStream`] may read: advanced when the connection
    /// is done with a request, so a stream still held by another task (an HTTP/2
    /// upstream's pipe that outlived its response) cannot read the next request's body.
    pub(super) body_serial: u32,
}

pub(super) fn lock(io: &Mutex<Io>) -> MutexGuard<'_, Io> {
    // Every critical section leaves `Io` consistent (no panics between its updates), so
    // a poisoned lock is still usable.
    io.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Io {
    /// Between requests: the read buffer goes back to the worker unless it holds bytes
    /// the client already sent (a pipelined request), the write buffer if it is large.
    fn lend_buffers_back(&mut self) {
        if self.read_buf.is_empty() {
            let buffer = std::mem::take(&mut self.read_buf);
            crate::lent::give_read_buffer(Reading::Requests, buffer);
        }
        // A small one (a head, a short body) costs an idle connection less than
        // handing it over and back costs every request.
        if self.write_buf.capacity() > KEPT_WRITE_BUFFER {
            crate::lent::give_write_buffer(std::mem::take(&mut self.write_buf));
        }
    }

    pub(super) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        crate::net::poll_read_into(&mut self.stream, &mut self.read_buf, cx, want)
    }

    /// While the proxy works on a request, watches the client: a client that closes (or
    /// half-closes) has gone away, and its request is abandoned, as with hyper (and
    /// nginx). Bytes it sends meanwhile (a pipelined request, the rest of a body) are
    /// kept, up to [`WATCH_LIMIT`]. Costs no system call while the socket is quiet.
    pub(super) fn poll_client(&mut self, cx: &mut Context<'_>) -> Client {
        if self.read_buf.len() >= WATCH_LIMIT {
            return Client::Quiet;
        }
        let seen = match self.poll_fill(cx, 1024) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Client::Gone,
            Poll::Ready(Ok(_)) => Client::Sent,
            Poll::Pending => return Client::Quiet,
        };
        if let Some(body_reader) = self.body_waker.take()
            && !body_reader.will_wake(cx.waker())
        {
            body_reader.wake();
        }
        seen
    }

    /// The body's reader waits for the client: if the connection's watch polls the
    /// socket after it, the watch passes on the wake-up (see `body_waker`).
    pub(super) fn wait_for_body_bytes(&mut self, reader: &Waker) {
        if !self
            .body_waker
            .as_ref()
            .is_some_and(|known| known.will_wake(reader))
        {
            self.body_waker = Some(reader.clone());
        }
    }

    pub(super) fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(written) = self.continue_owed {
            if written == CONTINUE.len() {
                self.continue_owed = None;
                return Pin::new(&mut self.stream).poll_flush(cx);
            }
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &CONTINUE[written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_owed = Some(written + n);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes from `write_buf[from..]` then `second` (one vectored write where the
    /// transport has them); returns how many bytes went out.
    pub(super) fn poll_write_two(
        &mut self,
        cx: &mut Context<'_>,
        from: usize,
        second: &[u8],
    ) -> Poll<io::Result<usize>> {
        let first = &self.write_buf[from..];
        let stream = Pin::new(&mut self.stream);
        if second.is_empty() {
            return stream.poll_write(cx, first);
        }
        if first.is_empty() {
            return stream.poll_write(cx, second);
        }
        stream.poll_write_vectored(cx, &[io::IoSlice::new(first), io::IoSlice::new(second)])
    }

    pub(super) fn poll_flush_stream(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Plain sockets have nothing to flush; TLS has records buffered.
        match self.stream {
            Stream::Tcp(_) | Stream::Unix(_) => Poll::Ready(Ok(())),
            _ => Pin::new(&mut self.stream).poll_flush(cx),
        }
    }
}

/// Serves one downstream HTTP/1.1 connection until the client closes it, it fails, or
/// the server drains (`shutdown` flips): then an idle connection closes at once, a busy
/// one after its response. `prefix` holds bytes already read off the connection.
pub(crate) async fn serve<P: Pipeline>(
    stream: Stream,
    prefix: BytesMut,
    downstream: Arc<Downstream>,
    session: Option<Arc<TlsSession>>,
    pipeline: &'static P,
    header_read_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) {
    // An empty `prefix` needs no room of its own: the first wait for a head lends one.
    let io = Arc::new(Mutex::new(Io {
        stream,
        read_buf: prefix,
        write_buf: Vec::new(),
        body: Decoder::Done,
        body_failed: false,
        continue_owed: None,
        body_waker: None,
        body_serial: 0,
    }));
    // One timer for the connection's life, re-armed only when it fires early: a head
    // that arrives before it (nearly all of them) costs no timer operation.
    let mut deadline = Box::pin(tokio::time::sleep(header_read_timeout));
    let mut deadline_waker = None;
    let mut drain = Drain::new(shutdown);
    loop {
        let waiting_since = Instant::now();
        let head = poll_fn(|cx| {
            let waiting = Waiting {
                timer: deadline.as_mut(),
                timer_waker: &mut deadline_waker,
                deadline: waiting_since + header_read_timeout,
                drain: &mut drain,
            };
            poll_head(&io, cx, waiting, pipeline, &downstream, session.as_deref())
        })
        .await;
        let (mut writer, mut body, close, upgrade) = match head {
            Ok(Some(Parsed::Request(head))) => {
                let (handler, request) = start(&io, *head, session.as_ref(), pipeline, &downstream);
                // The client went away: dropping the request's future abandons it
                // upstream too.
                let Some(response) = respond(&io, handler).await else {
                    tracing::debug!("client closed the connection before its response");
                    return;
                };
                let closing = !request.keep_alive || drain.is_draining();
                let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS
                    && request.upgrade.is_some();
                let (writer, body, close) =
                    write_head(&io, response, request.answering, closing && !switching);
                (writer, body, close, request.upgrade.filter(|_| switching))
            }
            Ok(Some(Parsed::Relay(head))) => {
                let draining = drain.signal();
                let Some((writer, body, close)) = relayed(&io, &head, &downstream, draining).await
                else {
                    tracing::debug!("client closed the connection before its response");
                    return;
                };
                (writer, body, close, None)
            }
            Ok(None) => return,
            Err(refusal) => {
                refuse(&io, refusal).await;
                return;
            }
        };
        let written = poll_fn(|cx| writer.poll_write(&io, &mut body, cx)).await;
        drop::<ResponseBody>(body);
        if let Err(error) = written {
            tracing::debug!(%error, "response not written whole; closing the connection");
            return;
        }
        if let Some(sender) = upgrade {
            hand_over(io, sender);
            return;
        }
        if close || !finish_request_body(&io, header_read_timeout).await {
            shutdown_write(&io).await;
            return;
        }
    }
}

/// What answering a request needs to know of it once the pipeline has it.
struct InFlight {
    answering: Answering,
    keep_alive: bool,
    /// Where the connection goes after a `101`, when the client asked to upgrade.
    upgrade: Option<oneshot::Sender<Rewound>>,
}

// The steps of one request are plain functions around the two waits (the response,
// then writing it), so that the head, the request and the response never live across
// an await: that keeps them out of the connection task, which every idle connection
// holds.

/// Builds the request from its head and starts the pipeline on it.
fn start<P: Pipeline>(
    io: &Arc<Mutex<Io>>,
    head: RequestHead,
    session: Option<&Arc<TlsSession>>,
    pipeline: &'static P,
    downstream: &Arc<Downstream>,
) -> (Handler, InFlight) {
    let RequestHead {
        mut parts,
        framing,
        keep_alive,
        expects_continue,
        accepts_trailers,
        wants_upgrade,
    } = head;
    let answering = Answering {
        version: parts.version,
        is_head: parts.method == http::Method::HEAD,
        accepts_trailers,
    };
    let body = if framing == Framing::Empty {
        IncomingBody::empty()
    } else {
        let mut shared = lock(io);
        shared.body = Decoder::new(framing);
        shared.continue_owed = expects_continue.then_some(0);
        shared.body_waker = None;
        let serial = shared.body_serial;
        drop(shared);
        IncomingBody::native(RequestStream::new(Arc::clone(io), serial))
    };
    if let Some(session) = session {
        parts.extensions.insert(Arc::clone(session));
    }
    let upgrade = wants_upgrade.then(|| {
        let (sender, upgrade) = DownstreamUpgrade::new();
        parts.extensions.insert(upgrade);
        sender
    });
    let request = Request::from_parts(parts, body);
    let handler = Handler::start(pipeline, request, Arc::clone(downstream));
    let in_flight = InFlight {
        answering,
        keep_alive,
        upgrade,
    };
    (handler, in_flight)
}

/// The pipeline's response, while watching the client; `None` if it went away first.
async fn respond(io: &Mutex<Io>, mut handler: Handler) -> Option<Response<ResponseBody>> {
    let response = poll_fn(|cx| {
        loop {
            if let Poll::Ready(response) = handler.poll_response(cx) {
                return Poll::Ready(Some(response));
            }
            match lock(io).poll_client(cx) {
                Client::Quiet => return Poll::Pending,
                Client::Sent => continue,
                Client::Gone => return Poll::Ready(None),
            }
        }
    })
    .await?;
    handler.finished();
    Some(response)
}

/// The relay's answer to a relayed request, as [`write_head`]'s; `None` if the client
/// went away first.
async fn relayed(
    io: &Mutex<Io>,
    head: &RelayHead,
    downstream: &Downstream,
    draining: &watch::Receiver<bool>,
) -> Option<(BodyWriter, ResponseBody, bool)> {
    let answering = Answering {
        version: head.version,
        is_head: head.method == http::Method::HEAD,
        accepts_trailers: head.accepts_trailers,
    };
    Some(
        match relay::exchange(io, head, answering, downstream, draining).await? {
            Relayed::Head {
                framing,
                body,
                close,
                ..
            } => (BodyWriter::new(framing, answering), body, close),
            Relayed::Response(response) => {
                let closing = !head.keep_alive || *draining.borrow();
                write_head(io, *response, answering, closing)
            }
        },
    )
}

/// Encodes the response head into the write buffer; the writer then sends it with the
/// body. `true` with them: the connection closes after this response.
fn write_head(
    io: &Mutex<Io>,
    response: Response<ResponseBody>,
    answering: Answering,
    closing: bool,
) -> (BodyWriter, ResponseBody, bool) {
    let (head, body) = response.into_parts();
    let mut shared = lock(io);
    let shared = &mut *shared;
    if shared.write_buf.capacity() == 0 {
        shared.write_buf = crate::lent::write_buffer();
    }
    shared.write_buf.clear();
    let (framing, close) = write::head(&mut shared.write_buf, &head, &body, answering, closing);
    crate::http::wire::recycle(head.headers);
    (BodyWriter::new(framing, answering), body, close)
}

/// What waiting for the next head watches besides the socket.
struct Waiting<'w> {
    timer: Pin<&'w mut Sleep>,
    /// The waker `timer` was last polled with.
    timer_waker: &'w mut Option<Waker>,
    deadline: Instant,
    drain: &'w mut Drain,
}

/// Reads until a whole request head is buffered. `Ok(None)`: the client closed (or the
/// server is draining) between requests, or the head did not arrive in time. A head the
/// relay takes has its upstream head encoded into the write buffer.
fn poll_head<P: Pipeline>(
    io: &Mutex<Io>,
    cx: &mut Context<'_>,
    waiting: Waiting<'_>,
    pipeline: &'static P,
    downstream: &Downstream,
    session: Option<&TlsSession>,
) -> Poll<Result<Option<Parsed>, Refusal>> {
    let Waiting {
        mut timer,
        timer_waker,
        deadline,
        drain,
    } = waiting;
    let mut io = lock(io);
    // Under the lock taken for the wait anyway; a no-op after the first poll.
    io.lend_buffers_back();
    loop {
        if !io.read_buf.is_empty() {
            let Io {
                read_buf,
                write_buf,
                ..
            } = &mut *io;
            let parsed = head::parse(read_buf, |raw| {
                let relay = pipeline.relay(raw)?;
                if write_buf.capacity() == 0 {
                    *write_buf = crate::lent::write_buffer();
                }
                relay::encode_request(write_buf, raw, downstream, session).then_some(relay)
            })?;
            if let Some(parsed) = parsed {
                return Poll::Ready(Ok(Some(parsed)));
            }
        }
        let progress = if io.read_buf.capacity() == 0 {
            // Between requests the connection holds no buffer: one is lent once the
            // client's next bytes are there to read.
            ready_for_buffer(&mut io, cx)
        } else {
            io.poll_fill(cx, READ_BUFFER)
        };
        match progress {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(None)),
            Poll::Ready(Ok(_)) => continue,
            Poll::Pending => {}
        }

        // Idle between requests while the server drains: nothing is lost by closing.
        if io.read_buf.is_empty() && drain.poll_draining(cx) {
            return Poll::Ready(Ok(None));
        }
        // A poll re-registers the timer's waker (≈ 100 instructions a request): while
        // the task polling is the one registered, it is enough to see whether it fired.
        let registered = timer_waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if !registered || timer.is_elapsed() {
            while timer.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    tracing::debug!("request head not received in time; closing the connection");
                    return Poll::Ready(Ok(None));
                }
                timer.as_mut().reset(deadline.into());
            }
            *timer_waker = Some(cx.waker().clone());
        }
        return Poll::Pending;
    }
}

/// Waits for the client's bytes without a buffer, then borrows one: `Ready(Ok(1))`
/// means there is now something to read into.
fn ready_for_buffer(io: &mut Io, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    ready!(io.stream.poll_read_ready(cx))?;
    io.read_buf = crate::lent::read_buffer(Reading::Requests, READ_BUFFER, READ_BUFFER);
    Poll::Ready(Ok(1))
}

/// The server's drain signal, as a connection watches it.
struct Drain {
    flag: watch::Receiver<bool>,
    /// Completes when draining starts; boxed once per connection so its waker
    /// registration survives between polls.
    started: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The waker `started` was last polled with: while it is the one polling now and
    /// the signal has not changed, the registration stands and `started` is not polled
    /// again (a poll re-registers with the channel: ≈ 500 instructions per request).
    registered: Option<Waker>,
}

impl Drain {
    fn new(flag: watch::Receiver<bool>) -> Self {
        let mut waiting = flag.clone();
        let started: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = waiting.wait_for(|draining| *draining).await;
        });
        Self {
            flag,
            started: Some(started),
            registered: None,
        }
    }

    fn is_draining(&self) -> bool {
        *self.flag.borrow()
    }

    /// The signal itself, for a wait that reads it later (it is `Sync`; the
    /// connection's registration is not).
    fn signal(&self) -> &watch::Receiver<bool> {
        &self.flag
    }

    fn poll_draining(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(started) = self.started.as_mut() else {
            return true;
        };
        // `flag` never marks a value seen, so once the signal has changed this stays
        // true and `started` is polled (it then completes, or re-registers).
        let unchanged = !self.flag.has_changed().unwrap_or(true);
        if unchanged
            && self
                .registered
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return false;
        }
        if started.as_mut().poll(cx).is_ready() {
            self.started = None;
            return true;
        }
        self.registered = Some(cx.waker().clone());
        false
    }
}

/// After the response: the request body must have been read to its end for the
/// connection to carry another request. What is left of a body the proxy answered
/// without reading (a filter's refusal, a direct response) is read and thrown away, up
/// to [`DRAIN_LIMIT`] bytes and the header-read timeout, as hyper does; past either,
/// or when the client still waits for a `100 Continue` it will not get, the connection
/// closes instead.
async fn finish_request_body(io: &Mutex<Io>, timeout: Duration) -> bool {
    {
        let mut shared = lock(io);
        shared.body_serial = shared.body_serial.wrapping_add(1);
        if shared.body_failed || shared.continue_owed.is_some() {
            shared.continue_owed = None;
            return false;
        }
        if shared.body.is_done() {
            return true;
        }
    }
    let mut drained = 0;
    let drain = poll_fn(|cx| {
        let mut shared = lock(io);
        let shared = &mut *shared;
        loop {
            match shared.body.decode(&mut shared.read_buf) {
                Ok(Decoded::Frame(frame)) => {
                    drained += frame.data_ref().map_or(0, |data| data.len());
                    if drained > DRAIN_LIMIT {
                        return Poll::Ready(false);
                    }
                }
                Ok(Decoded::End) => return Poll::Ready(true),
                Ok(Decoded::More) => match ready!(shared.poll_fill(cx, READ_BUFFER)) {
                    Ok(0) | Err(_) => return Poll::Ready(false),
                    Ok(_) => {}
                },
                Err(_) => return Poll::Ready(false),
            }
        }
    });
    tokio::time::timeout(timeout, drain).await.unwrap_or(false)
}

/// Answers a head the proxy refuses, then the connection closes.
async fn refuse(io: &Mutex<Io>, refusal: Refusal) {
    let (status, text) = match refusal {
        Refusal::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
        Refusal::TooLarge => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large",
        ),
        Refusal::UriTooLong => (StatusCode::URI_TOO_LONG, "request target too long"),
        Refusal::NotImplemented => (
            StatusCode::NOT_IMPLEMENTED,
            "transfer coding not implemented",
        ),
    };
    tracing::debug!(%status, reason = text, "request refused");
    {
        let mut shared = lock(io);
        shared.write_buf.clear();
        let reply = format!(
            "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        );
        shared.write_buf.extend_from_slice(reply.as_bytes());
    }
    let mut written = 0;
    let _ = poll_fn(|cx| {
        let mut shared = lock(io);
        let shared = &mut *shared;
        while written < shared.write_buf.len() {
            let buf = &shared.write_buf[written..];
            match ready!(Pin::new(&mut shared.stream).poll_write(cx, buf)) {
                Ok(0) | Err(_) => return Poll::Ready(()),
                Ok(n) => written += n,
            }
        }
        let _ = ready!(Pin::new(&mut shared.stream).poll_shutdown(cx));
        Poll::Ready(())
    })
    .await;
}

async fn shutdown_write(io: &Mutex<Io>) {
    let _ = poll_fn(|cx| Pin::new(&mut lock(io).stream).poll_shutdown(cx)).await;
}

/// Gives the connection (and any bytes the client sent after its request) to the
/// tunnel waiting on it. The request body, if it had one, was read to its end.
fn hand_over(io: Arc<Mutex<Io>>, sender: oneshot::Sender<Rewound>) {
    let Ok(io) = Arc::try_unwrap(io) else {
        tracing::debug!("upgrade: request body still referenced; closing");
        return;
    };
    let io = io
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = sender.send(Rewound::new(io.read_buf, io.stream));
}

/// The client's side of an upgraded native connection, for the exchange's tunnel:
/// inserted into the request's extensions when it asks for an upgrade (as hyper's
/// `OnUpgrade` is), resolved after the `101` has been written.
#[derive(Debug, Clone)]
pub(crate) struct DownstreamUpgrade(Arc<Mutex<Option<oneshot::Receiver<Rewound>>>>);

impl DownstreamUpgrade {
    fn new() -> (oneshot::Sender<Rewound>, Self) {
        let (sender, receiver) = oneshot::channel();
        (sender, Self(Arc::new(Mutex::new(Some(receiver)))))
    }

    /// The connection once the `101` is out; `None` if it never will be.
    pub(crate) async fn upgraded(self) -> Option<Rewound> {
        let receiver = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()?;
        receiver.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Wake;

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;
    use tokio::sync::Notify;

    use super::*;
    use crate::upstream::h1::Error;

    #[derive(Default)]
    struct Woken {
        flag: AtomicBool,
        notify: Notify,
    }

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.flag.store(true, Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    impl Woken {
        fn was_woken(&self) -> bool {
            self.flag.load(Ordering::SeqCst)
        }

        async fn wait(&self) {
            let wait = tokio::time::timeout(Duration::from_secs(10), self.notify.notified());
            assert!(wait.await.is_ok(), "never woken");
        }
    }

    fn connection_reading_a_body(server: UnixStream, length: u64) -> Arc<Mutex<Io>> {
        Arc::new(Mutex::new(Io {
            stream: Stream::Unix(server),
            read_buf: BytesMut::new(),
            write_buf: Vec::new(),
            body: Decoder::new(Framing::Length(length)),
            body_failed: false,
            continue_owed: None,
            body_waker: None,
            body_serial: 0,
        }))
    }

    /// A body's reader that outlives its request (an HTTP/2 upstream's pipe after the
    /// response) must not read what the client sends next.
    #[tokio::test]
    async fn a_body_left_behind_by_its_request_reads_nothing_more() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let io = connection_reading_a_body(server, 5);
        let mut stale = RequestStream::new(Arc::clone(&io), 0);
        client.write_all(b"hello").await.unwrap();
        assert!(finish_request_body(&io, Duration::from_secs(10)).await);

        lock(&io).body = Decoder::new(Framing::Length(4));
        client.write_all(b"next").await.unwrap();
        let waker = Waker::from(Arc::new(Woken::default()));
        match stale.poll_frame(&mut Context::from_waker(&waker)) {
            Poll::Ready(Some(Err(Error::RequestBodyAbandoned))) => {}
            other => panic!("expected the body abandoned, got {other:?}"),
        }
        assert_eq!(stale.size_hint().exact(), Some(0));
        assert_eq!(lock(&io).body.size_hint().exact(), Some(4));
    }

    /// An HTTP/2 upstream reads the request body from its own task while the
    /// connection's task watches the client: the bytes that arrive wake only the watch
    /// (the socket keeps the last waker), and the body's reader must hear of them from
    /// it, or the upload stalls with the bytes in the buffer.
    #[tokio::test]
    async fn a_body_read_from_another_task_hears_of_bytes_the_watch_buffered() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let io = connection_reading_a_body(server, 5);
        let mut body = RequestStream::new(Arc::clone(&io), 0);
        let pipe = Arc::new(Woken::default());
        let pipe_waker = Waker::from(Arc::clone(&pipe));
        let connection = Arc::new(Woken::default());
        let connection_waker = Waker::from(Arc::clone(&connection));

        let mut pipe_cx = Context::from_waker(&pipe_waker);
        assert!(body.poll_frame(&mut pipe_cx).is_pending());
        let mut connection_cx = Context::from_waker(&connection_waker);
        assert_eq!(lock(&io).poll_client(&mut connection_cx), Client::Quiet);

        client.write_all(b"hello").await.unwrap();
        connection.wait().await;
        assert_eq!(lock(&io).poll_client(&mut connection_cx), Client::Sent);
        assert!(pipe.was_woken(), "the body's reader was not told");
        match body.poll_frame(&mut pipe_cx) {
            Poll::Ready(Some(Ok(frame))) => assert_eq!(frame.into_data().unwrap(), "hello"),
            other => panic!("expected the body, got {other:?}"),
        }
    }
}
