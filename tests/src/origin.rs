//! Test-owned TCP origins that misbehave on purpose, which nginx cannot be told to do.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::DEADLINE;

/// A TCP origin on 127.0.0.1 run by plain threads (no runtime), stopped on drop.
///
/// - [`Origin::blackhole`]: accepts and never answers, for route timeouts (504 `UT`).
/// - [`Origin::reset`]: reads the request head and closes without answering (502 `UC`).
/// - [`Origin::held`]: reads the request head, then answers only after
///   [`Origin::release`], so a test controls exactly when a request is in flight
///   (graceful drain) without sleeping.
/// - [`Origin::scripted`]: reads the request head, writes fixed bytes (e.g. a response
///   cut short) and closes the connection.
/// - [`Origin::echo_at_once`]: answers a chunked request as soon as its head arrives and
///   then echoes its body as it comes, as a streaming (full-duplex) service does.
/// - [`Origin::continue_first`]: answers `100 Continue` as soon as a request head
///   arrives, whether or not it was asked for, then reads the body and answers.
/// - [`Origin::answer_at_once`]: answers as soon as a request head arrives and reads no
///   body (it takes whatever follows as the next request).
///
/// The last three keep each connection for the requests that follow on it.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    arrivals: Mutex<Receiver<String>>,
}

#[derive(Debug)]
enum Behaviour {
    Blackhole,
    Reset,
    Held { response: Vec<u8> },
    Scripted { bytes: Vec<u8> },
    EchoAtOnce,
    ContinueFirst { response: Vec<u8> },
    AnswerAtOnce { response: Vec<u8> },
}

#[derive(Debug)]
struct Shared {
    behaviour: Behaviour,
    stop: AtomicBool,
    released: Mutex<bool>,
    wake: Condvar,
    parked: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Origin {
    /// Accepts connections and never reads or answers.
    pub fn blackhole() -> Self {
        Self::start(Behaviour::Blackhole)
    }

    /// Reads each request head, then closes the connection without a response.
    pub fn reset() -> Self {
        Self::start(Behaviour::Reset)
    }

    /// Reads each request head and answers `200` with `body` once [`release`](Self::release)
    /// is called (every connection, before or after the release).
    pub fn held(body: &[u8]) -> Self {
        Self::start(Behaviour::Held {
            response: ok_response(body),
        })
    }

    /// Reads each request head, writes `bytes` as they are, then closes the connection.
    pub fn scripted(bytes: &[u8]) -> Self {
        Self::start(Behaviour::Scripted {
            bytes: bytes.to_vec(),
        })
    }

    /// Reads each request head (of a chunked request), answers `200` with a chunked body
    /// at once, then writes back every byte of the request body as it arrives: the
    /// request's chunks become the response's, up to and including the last one.
    pub fn echo_at_once() -> Self {
        Self::start(Behaviour::EchoAtOnce)
    }

    /// Reads each request head (of a request with a `Content-Length` body), writes
    /// `100 Continue`, reports the head to [`wait_request`](Self::wait_request), reads the
    /// body, reporting each piece read the same way, and answers `200` with `body`.
    pub fn continue_first(body: &[u8]) -> Self {
        Self::start(Behaviour::ContinueFirst {
            response: ok_response(body),
        })
    }

    /// Reads each request head and answers `200` with `body` at once, reading nothing
    /// past the head: body bytes that reach it on the same connection are read as the
    /// start of the next head, so a reported head that does not start with a method
    /// shows a connection reused behind part of a request.
    pub fn answer_at_once(body: &[u8]) -> Self {
        Self::start(Behaviour::AnswerAtOnce {
            response: ok_response(body),
        })
    }

    fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind origin: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("origin local_addr: {e}"));
        let shared = Arc::new(Shared {
            behaviour,
            stop: AtomicBool::new(false),
            released: Mutex::new(false),
            wake: Condvar::new(),
            parked: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let (arrived, arrivals) = channel();
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, &shared, &arrived))
        };
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
            arrivals: Mutex::new(arrivals),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Blocks until the next request head arrived (for a blackhole: the next connection)
    /// and returns it; panics after [`DEADLINE`].
    pub fn wait_request(&self) -> String {
        lock(&self.arrivals)
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| {
                panic!(
                    "no request reached the test origin at {} within {DEADLINE:?}",
                    self.addr
                )
            })
    }

    /// Lets held connections answer.
    pub fn release(&self) {
        *lock(&self.shared.released) = true;
        self.shared.wake.notify_all();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        // Unblock `accept` so the acceptor sees the stop flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        lock(&self.shared.parked).clear();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, arrived: &Sender<String>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if let Behaviour::Blackhole = shared.behaviour {
            lock(&shared.parked).push(stream);
            let _ = arrived.send(String::new());
            continue;
        }
        let shared = Arc::clone(shared);
        let arrived = arrived.clone();
        std::thread::spawn(move || serve(stream, &shared, &arrived));
    }
}

fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

fn serve(mut stream: TcpStream, shared: &Shared, arrived: &Sender<String>) {
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    if let Behaviour::ContinueFirst { response } = &shared.behaviour {
        continue_first(stream, head, response, arrived);
        return;
    }
    let _ = arrived.send(head);
    match &shared.behaviour {
        Behaviour::Blackhole => {}
        Behaviour::Reset => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Behaviour::Scripted { bytes } => {
            let _ = stream.write_all(bytes);
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
        }
        Behaviour::EchoAtOnce => {
            while echo_at_once(&mut stream) {
                let Some(head) = read_head(&mut stream) else {
                    return;
                };
                let _ = arrived.send(head);
            }
        }
        Behaviour::Held { response } => {
            let mut released = lock(&shared.released);
            while !*released && !shared.stop.load(Ordering::SeqCst) {
                released = shared
                    .wake
                    .wait(released)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let go = *released && !shared.stop.load(Ordering::SeqCst);
            drop(released);
            if go {
                let _ = stream.write_all(response);
                let _ = stream.flush();
                // Wait for the proxy to close (or reuse and abandon) the connection.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            }
        }
        Behaviour::AnswerAtOnce { response } => loop {
            if stream.write_all(response).is_err() {
                return;
            }
            let Some(head) = read_head(&mut stream) else {
                return;
            };
            let _ = arrived.send(head);
        },
        Behaviour::ContinueFirst { .. } => unreachable!("served above"),
    }
}

/// Answers a chunked request whose head was read and echoes its body up to its last
/// chunk; `false` if the peer went away first.
fn echo_at_once(stream: &mut TcpStream) -> bool {
    let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    if stream.write_all(head).is_err() {
        return false;
    }
    let mut echoed = Vec::new();
    let mut buf = [0u8; 4096];
    while !echoed.ends_with(b"\r\n0\r\n\r\n") && !echoed.starts_with(b"0\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => {
                if stream.write_all(&buf[..n]).is_err() {
                    return false;
                }
                echoed.extend_from_slice(&buf[..n]);
            }
            _ => return false,
        }
    }
    true
}

/// [`Origin::continue_first`]'s requests, one after another on `stream`.
fn continue_first(
    mut stream: TcpStream,
    mut head: String,
    response: &[u8],
    arrived: &Sender<String>,
) {
    loop {
        let length = content_length(&head);
        if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return;
        }
        let _ = arrived.send(head);
        let mut body = vec![0; length];
        let mut read = 0;
        while read < length {
            match stream.read(&mut body[read..]) {
                Ok(n) if n > 0 => {
                    let _ = arrived.send(String::from_utf8_lossy(&body[read..read + n]).into());
                    read += n;
                }
                _ => return,
            }
        }
        if stream.write_all(response).is_err() {
            return;
        }
        match read_head(&mut stream) {
            Some(next) => head = next,
            None => return,
        }
    }
}

/// The `Content-Length` of a request head, 0 without one.
fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads up to the end of a request head; `None` if the peer closed first.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
