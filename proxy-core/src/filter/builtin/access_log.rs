//! Access logging in Envoy's format, written off the request path.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::header::{HOST, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Version};

use super::template::{Pseudo, Source, Template};
use crate::filter::{HttpFilter, RequestInfo, Summary};
use crate::stats::Counter;

/// Lines waiting for the writer. At a few hundred bytes a line this bounds the queue
/// at a few megabytes; a burst beyond it is dropped (and counted), never waited on.
const QUEUE_LINES: usize = 8192;
/// The writer's buffer: lines reach the output in batches of up to this size.
const BUFFER_BYTES: usize = 64 * 1024;
/// Buffered lines reach the output at least this often (Envoy's default
/// `file_flush_interval`).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long dropping an `AccessLog` waits for the writer to flush.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Writes one line per exchange in Envoy's access-log format.
///
/// The format is compiled once, at construction (operators: [`format`](super::format));
/// unavailable values print `-`, and a newline is added when the format does not end
/// with one. [`AccessLog::DEFAULT_FORMAT`] is Envoy's default format.
///
/// `on_complete` renders the line on the worker and hands it to a dedicated writer
/// thread through a bounded queue (8192 lines). A worker never blocks on
/// the log: when the queue is full the line is dropped and counted
/// ([`AccessLog::dropped`]). The writer batches lines in a 64 KiB buffer and flushes it
/// at least once a second, and when the `AccessLog` is dropped (at shutdown), waiting up
/// to two seconds for the flush so a stuck output cannot hang the exit. A process that
/// exits without dropping its topology loses up to a second of lines.
///
/// The queue is `std`'s bounded channel: a send is a lock-free slot claim, plus, only
/// when the writer is idle and asleep, a brief lock to wake it (never held across I/O).
///
/// Request values (`%REQ(..)%`, `%PROTOCOL%`) are captured when the request passes this
/// filter, so list the log first to see the request as the client sent it (before
/// rewrites, and even when a later filter answers it). If an earlier filter answered,
/// they print `-`.
pub struct AccessLog {
    template: Template,
    sender: Option<SyncSender<Vec<u8>>>,
    /// Disconnects when the writer thread has exited. In a `Mutex` only because
    /// `Receiver` is not `Sync`; it is touched once, by `Drop`, through `get_mut`.
    writer_done: Option<Mutex<Receiver<()>>>,
    dropped: Counter,
    write_errors: Arc<Counter>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("template", &self.template)
            .field("dropped", &self.dropped.get())
            .field("write_errors", &self.write_errors.get())
            .finish_non_exhaustive()
    }
}

/// Per-request state of [`AccessLog`]: what the line needs from the request and the
/// response heads, captured while they pass.
#[derive(Debug, Default)]
pub struct AccessLogState {
    method: Option<Method>,
    path: Option<PathAndQuery>,
    authority: Option<Authority>,
    host: Option<HeaderValue>,
    scheme: Option<Scheme>,
    version: Option<Version>,
    request_headers: Vec<Option<HeaderValue>>,
    response_headers: Vec<Option<HeaderValue>>,
}

impl AccessLog {
    /// Several logs (say, a file and stdout) may sit in one chain.
    pub const UNIQUE: bool = false;

    /// Envoy's default access-log format.
    pub const DEFAULT_FORMAT: &'static str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

    /// Logs to standard output. Cannot fail: if the writer thread cannot be started
    /// (the system is out of threads), a warning is logged and lines are dropped.
    pub fn stdout(format: &'static str) -> Self {
        match Self::with_writer(format, Box::new(io::stdout()), QUEUE_LINES, BUFFER_BYTES) {
            Ok(log) => log,
            Err(error) => {
                tracing::warn!(%error, "cannot start the access log writer; stdout access log disabled");
                Self::disabled(format)
            }
        }
    }

    /// Logs to a file, created if missing and appended to (several processes may share
    /// one file: each batch is written with one `write` on an `O_APPEND` file).
    pub fn file(path: impl AsRef<Path>, format: &'static str) -> Result<Self, io::Error> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Self::with_writer(format, Box::new(file), QUEUE_LINES, BUFFER_BYTES)
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Writes that failed (disk full, closed pipe); their lines are lost.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.get()
    }

    fn with_writer(
        format: &'static str,
        output: Box<dyn Write + Send>,
        queue: usize,
        buffer: usize,
    ) -> io::Result<Self> {
        let (sender, lines) = mpsc::sync_channel(queue);
        let (done_guard, writer_done) = mpsc::channel::<()>();
        let write_errors = Arc::new(Counter::default());
        let errors = Arc::clone(&write_errors);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                // Dropped when the thread ends, however it ends: that is the signal.
                let _done_guard = done_guard;
                write_lines(&lines, BufWriter::with_capacity(buffer, output), &errors);
            })?;
        Ok(Self {
            template: Template::compile(format),
            sender: Some(sender),
            writer_done: Some(Mutex::new(writer_done)),
            dropped: Counter::default(),
            write_errors,
        })
    }

    fn disabled(format: &'static str) -> Self {
        Self {
            template: Template::compile(format),
            sender: None,
            writer_done: None,
            dropped: Counter::default(),
            write_errors: Arc::new(Counter::default()),
        }
    }

    fn render(&self, state: &AccessLogState, info: &RequestInfo, summary: &Summary) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        self.template.render(
            &Snapshot {
                state,
                info,
                summary,
            },
            b"-",
            &mut line,
        );
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        line
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // Closing the queue tells the writer to flush and exit.
        drop(self.sender.take());
        if let Some(done) = self.writer_done.take() {
            // A poisoned lock still holds a usable receiver.
            let done = done.into_inner().unwrap_or_else(PoisonError::into_inner);
            let _ = done.recv_timeout(SHUTDOWN_WAIT);
        }
    }
}

/// The writer thread: batches lines, flushes at least every [`FLUSH_INTERVAL`] and
/// when the queue closes.
fn write_lines(
    lines: &Receiver<Vec<u8>>,
    mut out: BufWriter<Box<dyn Write + Send>>,
    errors: &Counter,
) {
    let mut failing = false;
    let mut check = |result: io::Result<()>| match result {
        Ok(()) => {
            if failing {
                tracing::info!("access log writes succeed again");
            }
            failing = false;
        }
        Err(error) => {
            errors.inc();
            if !failing {
                tracing::warn!(%error, "access log write failed; lines are being lost");
            }
            failing = true;
        }
    };
    // When the oldest unflushed line was buffered.
    let mut unflushed_since: Option<Instant> = None;
    loop {
        let received = match unflushed_since {
            None => lines.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => lines.recv_timeout(FLUSH_INTERVAL.saturating_sub(since.elapsed())),
        };
        match received {
            Ok(line) => {
                check(out.write_all(&line));
                let since = *unflushed_since.get_or_insert_with(Instant::now);
                // A steady stream never times out; flush on age as well.
                if since.elapsed() >= FLUSH_INTERVAL {
                    check(out.flush());
                    unflushed_since = None;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                check(out.flush());
                unflushed_since = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                check(out.flush());
                return;
            }
        }
    }
}

struct Snapshot<'a> {
    state: &'a AccessLogState,
    info: &'a RequestInfo,
    summary: &'a Summary,
}

impl Source for Snapshot<'_> {
    fn info(&self) -> &RequestInfo {
        self.info
    }

    fn pseudo(&self, pseudo: Pseudo) -> Option<&[u8]> {
        let s = self.state;
        match pseudo {
            Pseudo::Method => s.method.as_ref().map(|m| m.as_str().as_bytes()),
            Pseudo::Path => s.path.as_ref().map(|p| p.as_str().as_bytes()),
            Pseudo::Authority => s
                .authority
                .as_ref()
                .map(|a| a.as_str().as_bytes())
                .or_else(|| s.host.as_ref().map(HeaderValue::as_bytes)),
            Pseudo::Scheme => s.scheme.as_ref().map(|scheme| scheme.as_str().as_bytes()),
        }
    }

    fn request_header(&self, slot: usize, _name: &HeaderName) -> Option<&[u8]> {
        self.state
            .request_headers
            .get(slot)?
            .as_ref()
            .map(HeaderValue::as_bytes)
    }

    fn response_header(&self, slot: usize, _name: &HeaderName) -> Option<&[u8]> {
        self.state
            .response_headers
            .get(slot)?
            .as_ref()
            .map(HeaderValue::as_bytes)
    }

    fn protocol(&self) -> Option<Version> {
        self.state.version
    }

    fn summary(&self) -> Option<&Summary> {
        Some(self.summary)
    }
}

impl HttpFilter for AccessLog {
    type State = AccessLogState;

    async fn on_request_headers(
        &self,
        state: &mut AccessLogState,
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> crate::filter::Flow {
        // Clones here copy no bytes: methods, URI parts and header values are
        // reference-counted or inline.
        let uses = self.template.uses();
        if uses.method {
            state.method = Some(request.method.clone());
        }
        if uses.path {
            state.path = request.uri.path_and_query().cloned();
        }
        if uses.authority {
            state.authority = request.uri.authority().cloned();
            state.host = request.headers.get(HOST).cloned();
        }
        if uses.scheme {
            state.scheme = request.uri.scheme().cloned();
        }
        state.version = Some(request.version);
        state.request_headers = self
            .template
            .request_headers()
            .iter()
            .map(|name| request.headers.get(name).cloned())
            .collect();
        crate::filter::Flow::Continue
    }

    async fn on_response_headers(
        &self,
        state: &mut AccessLogState,
        response: &mut http::response::Parts,
        _info: &RequestInfo,
    ) -> crate::filter::Flow {
        state.response_headers = self
            .template
            .response_headers()
            .iter()
            .map(|name| response.headers.get(name).cloned())
            .collect();
        crate::filter::Flow::Continue
    }

    fn on_complete(&self, state: AccessLogState, info: &RequestInfo, summary: &Summary) {
        let Some(sender) = &self.sender else {
            self.dropped.inc();
            return;
        };
        let line = self.render(&state, info, summary);
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use http::StatusCode;

    use super::*;
    use crate::filter::builtin::test_util::{info, now, request, response};

    fn summary() -> Summary {
        Summary {
            status: StatusCode::OK,
            response_flags: "",
            bytes_received: 5,
            bytes_sent: 1234,
            duration: Duration::from_millis(42),
            upstream: Some("127.0.0.1:8081".into()),
            completed: true,
        }
    }

    /// Runs one exchange through `log`'s hooks.
    fn log_exchange(
        log: &AccessLog,
        req: &[(&str, &str)],
        resp: &[(&str, &str)],
        summary: &Summary,
    ) {
        let mut state = AccessLogState::default();
        let mut info = info();
        info.client_ip = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        info.route = "edge/any/0";
        let mut req = request("GET", "/search?q=rust", req);
        now(log.on_request_headers(&mut state, &mut req, &info));
        let mut resp = response(summary.status.as_u16(), resp);
        now(log.on_response_headers(&mut state, &mut resp, &info));
        log.on_complete(state, &info, summary);
    }

    /// Polls `path` until it holds `lines` lines or a generous deadline passes.
    fn wait_for_lines(path: &Path, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let content = std::fs::read_to_string(path).unwrap_or_default();
            if content.lines().count() >= lines || Instant::now() > deadline {
                return content;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    const FORMAT: &str = "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% \
        %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %UPSTREAM_HOST% %DOWNSTREAM_REMOTE_ADDRESS% \
        %ROUTE_NAME% \"%REQ(USER-AGENT)%\" \"%REQ(X-FORWARDED-FOR)%\" %RESP(content-type)%";

    #[test]
    fn file_log_writes_the_line_within_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::file(&path, FORMAT).unwrap();
        log_exchange(
            &log,
            &[("user-agent", "curl/8.5")],
            &[("content-type", "text/html")],
            &summary(),
        );
        let content = wait_for_lines(&path, 1);
        assert_eq!(
            content,
            "GET /search?q=rust HTTP/1.1 200 - 5 1234 42 127.0.0.1:8081 192.0.2.1 edge/any/0 \
             \"curl/8.5\" \"-\" text/html\n"
        );
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn drop_flushes_pending_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::file(&path, "%RESPONSE_CODE%").unwrap();
        for _ in 0..3 {
            log_exchange(&log, &[], &[], &summary());
        }
        drop(log);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "200\n200\n200\n");
    }

    #[test]
    fn file_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = AccessLog::file(&path, "%RESPONSE_CODE%\n").unwrap();
        log_exchange(&log, &[], &[], &summary());
        drop(log);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\n200\n");
    }

    #[test]
    fn unopenable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("access.log");
        assert!(AccessLog::file(&path, AccessLog::DEFAULT_FORMAT).is_err());
    }

    #[test]
    fn default_format_is_valid() {
        assert!(crate::filter::builtin::format::parse(AccessLog::DEFAULT_FORMAT).is_ok());
    }

    #[test]
    fn default_format_matches_envoy() {
        let log = AccessLog::disabled(AccessLog::DEFAULT_FORMAT);
        let mut state = AccessLogState::default();
        let info = info();
        let mut req = request(
            "POST",
            "/api/items?page=2",
            &[
                ("host", "example.org"),
                ("user-agent", "curl/8.5"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-request-id", "abc"),
            ],
        );
        now(log.on_request_headers(&mut state, &mut req, &info));
        let mut resp = response(503, &[]);
        now(log.on_response_headers(&mut state, &mut resp, &info));
        let summary = Summary {
            status: StatusCode::SERVICE_UNAVAILABLE,
            response_flags: "UH",
            upstream: None,
            ..summary()
        };
        let line = String::from_utf8(log.render(&state, &info, &summary)).unwrap();
        // `[2024-05-01T12:00:00.123Z] ` then the fixed part.
        assert!(line.starts_with('['), "{line}");
        assert_eq!(&line[25..27], "] ", "{line}");
        assert_eq!(
            &line[27..],
            "\"POST /api/items?page=2 HTTP/1.1\" 503 UH 5 1234 42 - \"10.0.0.1\" \"curl/8.5\" \"abc\" \
             \"example.org\" \"-\"\n"
        );
    }

    #[test]
    fn request_values_are_dashes_when_the_request_hook_did_not_run() {
        let log =
            AccessLog::disabled("%REQ(:METHOD)% %REQ(user-agent)% %PROTOCOL% %RESPONSE_CODE%");
        let line = log.render(&AccessLogState::default(), &info(), &summary());
        assert_eq!(line, b"- - - 200\n");
    }

    #[test]
    fn a_full_queue_drops_lines_instead_of_blocking() {
        /// Blocks every write until released, standing in for a stalled disk.
        struct Stalled {
            release: Arc<Mutex<Receiver<()>>>,
            written: Arc<Mutex<Vec<u8>>>,
        }
        impl Write for Stalled {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                // Err means the test dropped the release handle: stop stalling.
                let _ = self.release.lock().unwrap().recv();
                self.written.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let written = Arc::new(Mutex::new(Vec::new()));
        let output = Stalled {
            release: Arc::new(Mutex::new(release_rx)),
            written: Arc::clone(&written),
        };
        // A queue of two and no buffer: each line goes to the stalled output at once.
        let log = AccessLog::with_writer("%RESPONSE_CODE%", Box::new(output), 2, 0).unwrap();
        let started = Instant::now();
        for _ in 0..6 {
            log_exchange(&log, &[], &[], &summary());
        }
        // Never blocked: six calls against a stalled writer return promptly...
        assert!(started.elapsed() < Duration::from_secs(5));
        // ...and at most three lines are in flight (two queued, one being written).
        let dropped = log.dropped();
        assert!(dropped >= 3, "{dropped}");
        drop(release_tx);
        drop(log);
        let lines = written
            .lock()
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(lines as u64 + dropped, 6);
    }
}
