//! HTTP/1.1 message framing across the proxy, pinned as it behaves today (upstream
//! client: hyper's), so a rewrite of the upstream client can be checked against it.
//!
//! Responses: a scripted raw origin on 127.0.0.1 answers each request with fixed bytes
//! (well or badly framed) and then keeps its connection open or closes it. The tests
//! assert what a raw downstream client receives, and whether the next request reuses
//! the upstream connection (the origin counts the connections it accepted, and the
//! ones the proxy closed).
//!
//! Requests: the origin records the raw bytes of every request it receives; the tests
//! assert on their framing, and on what the proxy does with smuggling-shaped requests
//! from the client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proxy_core::config::EndpointAddress;
use proxy_core::server::Server;
use support::{GET, eventually, within};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// The scripted origin

/// What the origin does with its connection after writing a reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Waits for the next request on the same connection.
    KeepOpen,
    /// Closes its side (FIN) at once, then waits for the proxy to close too.
    Close,
}

/// One scripted answer: raw bytes written as they are.
#[derive(Clone)]
struct Reply {
    bytes: Vec<u8>,
    then: Then,
}

fn keep_open(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        then: Then::KeepOpen,
    }
}

fn close_after(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        then: Then::Close,
    }
}

/// A well-framed keep-alive answer, `second`, for the request after the one under test.
const SECOND: &str = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";

/// A raw HTTP/1.1 origin on 127.0.0.1. The `n`th request it reads (from 0, over all
/// connections, in arrival order) gets `script[n]`, or the script's last reply once the
/// script runs out.
struct Origin {
    address: EndpointAddress,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    /// Connections the proxy closed (the origin read end of stream).
    closed_by_proxy: Arc<AtomicUsize>,
    /// Raw bytes of every request read (head and framed body), in arrival order; one
    /// whose body the proxy cut short holds what arrived of it.
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Requests whose head arrived but not the whole body.
    incomplete: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    async fn start(script: Vec<Reply>) -> Origin {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = EndpointAddress::Tcp(listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let closed_by_proxy = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let incomplete = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let counters = Counters {
            requests: Arc::clone(&requests),
            incomplete: Arc::clone(&incomplete),
            closed_by_proxy: Arc::clone(&closed_by_proxy),
        };
        let accepted = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, Arc::clone(&script), counters.clone()));
            }
        });
        Origin {
            address,
            connections,
            closed_by_proxy,
            requests,
            incomplete,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn closed_by_proxy(&self) -> usize {
        self.closed_by_proxy.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    fn incomplete(&self) -> usize {
        self.incomplete.load(Ordering::SeqCst)
    }
}

/// What a connection's task records, shared with the [`Origin`].
#[derive(Clone)]
struct Counters {
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    incomplete: Arc<AtomicUsize>,
    closed_by_proxy: Arc<AtomicUsize>,
}

/// How reading a request ended.
enum Read {
    /// Head and framed body.
    Whole(Vec<u8>),
    /// The stream ended after the head, before the end of the body: what arrived.
    Cut(Vec<u8>),
    /// The stream ended between requests (or within a head).
    Closed,
}

async fn serve(mut stream: TcpStream, script: Arc<Vec<Reply>>, counters: Counters) {
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buffer).await {
            Read::Whole(request) => request,
            Read::Cut(partial) => {
                counters.requests.lock().unwrap().push(partial);
                counters.incomplete.fetch_add(1, Ordering::SeqCst);
                counters.closed_by_proxy.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Read::Closed => {
                counters.closed_by_proxy.fetch_add(1, Ordering::SeqCst);
                return;
            }
        };
        let n = {
            let mut requests = counters.requests.lock().unwrap();
            requests.push(request);
            requests.len() - 1
        };
        let reply = &script[n.min(script.len() - 1)];
        if stream.write_all(&reply.bytes).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if reply.then == Then::Close {
            // FIN, then drain until the proxy closes as well: closing with unread bytes
            // would send a reset that could destroy the reply in flight.
            let _ = stream.shutdown().await;
            let mut sink = [0; 4096];
            while let Ok(1..) = stream.read(&mut sink).await {}
            counters.closed_by_proxy.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Reads one request: its head, then a body framed by `Content-Length` or chunked.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Read {
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if read_more(stream, buffer).await.is_none() {
            return Read::Closed;
        }
    };
    let head = buffer[..head_end].to_vec();
    let chunked = header_values(&head, "transfer-encoding")
        .iter()
        .any(|value| value.to_ascii_lowercase().contains("chunked"));
    let length = header_values(&head, "content-length")
        .first()
        .map(|value| value.parse::<usize>().unwrap());
    let end = if chunked {
        loop {
            if let Some((_, used)) = dechunk(&buffer[head_end..]) {
                break head_end + used;
            }
            if read_more(stream, buffer).await.is_none() {
                return Read::Cut(std::mem::take(buffer));
            }
        }
    } else if let Some(length) = length {
        while buffer.len() < head_end + length {
            if read_more(stream, buffer).await.is_none() {
                return Read::Cut(std::mem::take(buffer));
            }
        }
        head_end + length
    } else {
        head_end
    };
    Read::Whole(buffer.drain(..end).collect())
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    match stream.read_buf(buffer).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(()),
    }
}

// ---------------------------------------------------------------------------------------
// Message parsing (test side, deliberately simple)

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The values of the header `name` (case-insensitive) in a raw head, in order.
fn header_values(head: &[u8], name: &str) -> Vec<String> {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
        .collect()
}

/// Decodes a complete chunked body at the start of `raw`: the payload and the number of
/// bytes the chunked encoding took (trailers included). `None` if incomplete or invalid.
fn dechunk(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut payload = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&raw[at..], b"\r\n")?;
        let line = std::str::from_utf8(&raw[at..line_end]).ok()?;
        let size = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let line_end = at + find(&raw[at..], b"\r\n")?;
                let empty = line_end == at;
                at = line_end + 2;
                if empty {
                    return Some((payload, at));
                }
            }
        }
        let data_end = at.checked_add(size)?;
        if raw.len() < data_end + 2 || &raw[data_end..data_end + 2] != b"\r\n" {
            return None;
        }
        payload.extend_from_slice(&raw[at..data_end]);
        at = data_end + 2;
    }
}

/// A whole raw response as the downstream client read it, until the proxy closed.
struct Answer {
    raw: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    fn head(&self) -> &[u8] {
        let end = find(&self.raw, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of the head: {:?}", self.text()));
        &self.raw[..end + 4]
    }

    fn status(&self) -> u16 {
        self.raw
            .get(9..12)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {:?}", self.text()))
    }

    fn header(&self, name: &str) -> Option<String> {
        header_values(self.head(), name).into_iter().next()
    }

    fn headers(&self, name: &str) -> Vec<String> {
        header_values(self.head(), name)
    }

    /// The bytes after the head, as framed on the wire.
    fn raw_body(&self) -> &[u8] {
        &self.raw[self.head().len()..]
    }

    /// The body, decoded by the framing the proxy chose; `None` if it is incomplete (the
    /// proxy closed before the framing said the body ended).
    fn body(&self) -> Option<Vec<u8>> {
        let raw = self.raw_body();
        let chunked = self
            .headers("transfer-encoding")
            .iter()
            .any(|value| value.eq_ignore_ascii_case("chunked"));
        if chunked {
            let (payload, used) = dechunk(raw)?;
            assert_eq!(
                used,
                raw.len(),
                "bytes after the chunked body: {:?}",
                self.text()
            );
            Some(payload)
        } else if let Some(length) = self.header("content-length") {
            let length: usize = length.parse().unwrap();
            assert!(
                raw.len() <= length,
                "bytes after the body: {:?}",
                self.text()
            );
            (raw.len() == length).then(|| raw.to_vec())
        } else {
            Some(raw.to_vec())
        }
    }

    fn body_text(&self) -> String {
        let body = self
            .body()
            .unwrap_or_else(|| panic!("incomplete body: {:?}", self.text()));
        String::from_utf8(body).unwrap()
    }

    fn flag(&self) -> Option<String> {
        self.header("x-proxy-response-flags")
    }
}

// ---------------------------------------------------------------------------------------
// The proxy and its client

/// A proxy in front of `origin` alone (a default round-robin cluster, no retries).
fn proxy_to(origin: &Origin) -> (Server, SocketAddr) {
    let cluster = support::cluster("origin", vec![origin.address.clone()]);
    support::start_proxy(cluster, "framing")
}

/// Writes `request` on a new connection and reads everything until the proxy closes it
/// (a reset ends the read too, keeping what arrived before it).
async fn send(proxy: SocketAddr, request: impl AsRef<[u8]>) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream.write_all(request.as_ref()).await.unwrap();
        let mut raw = Vec::new();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
        Answer { raw }
    };
    within("the proxy answers and closes", exchange).await
}

async fn get(proxy: SocketAddr) -> Answer {
    send(proxy, GET).await
}

/// Sends a GET whose answer the origin scripts with `first`, then a second GET answered
/// with [`SECOND`]; returns the first answer and the number of upstream connections the
/// two took.
async fn first_then_second(first: Reply) -> (Answer, usize) {
    let origin = Origin::start(vec![first, keep_open(SECOND)]).await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = get(proxy).await;
    let second = get(proxy).await;
    assert_eq!(second.status(), 200, "{:?}", second.text());
    assert_eq!(second.body_text(), "second");
    assert_eq!(
        origin.requests().len(),
        2,
        "both requests reached the origin"
    );
    (answer, origin.connections())
}

fn assert_bad_gateway_uc(answer: &Answer) {
    assert_eq!(answer.status(), 502, "{:?}", answer.text());
    assert_eq!(answer.flag().as_deref(), Some("UC"), "{:?}", answer.text());
    assert_eq!(answer.body_text(), "upstream reset before response\n");
}

// ---------------------------------------------------------------------------------------
// Response framing

/// Chunked wins (RFC 9112 §6.3) and the origin's `Content-Length` is dropped before the
/// response goes on, so the whole de-chunked body arrives, re-framed. A message framed
/// both ways is a smuggling pattern: the connection is not trusted again.
#[tokio::test]
async fn chunked_with_content_length_is_read_chunked_and_the_length_dropped() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert!(
        answer.headers("content-length").is_empty(),
        "{:?}",
        answer.text()
    );
    assert_eq!(answer.body_text(), "hello world");
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn conflicting_content_lengths_answer_502_uc() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ))
    .await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2, "the unparsable connection is not reused");
}

#[tokio::test]
async fn identical_content_lengths_are_accepted_as_one() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "hello");
    assert_eq!(answer.headers("content-length"), ["5"]);
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn unknown_transfer_coding_xchunked_makes_the_body_close_delimited() {
    let origin = Origin::start(vec![close_after(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )])
    .await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = get(proxy).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "5\r\nhello\r\n0\r\n\r\n");
}

#[tokio::test]
async fn transfer_encoding_chunked_then_identity_is_read_until_close() {
    let origin = Origin::start(vec![close_after(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )])
    .await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = get(proxy).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "5\r\nhello\r\n0\r\n\r\n");
}

#[tokio::test]
async fn space_before_the_colon_of_transfer_encoding_answers_502_uc() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ))
    .await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2);
}

/// Chunked may be applied once (RFC 9112 §7.1): a response claiming it twice has no
/// trustworthy framing. (hyper's client reads it as chunked once.)
#[tokio::test]
async fn transfer_encoding_chunked_twice_answers_502_uc() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n",
    ))
    .await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2);
}

/// A chunked response that goes wrong after the chunk `hello`: the client gets the
/// status line and `forwarded` (the chunks the proxy relayed, re-chunked), then the
/// proxy cuts the downstream connection without a last chunk; the upstream connection
/// is closed, not pooled, and the next request dials a new one.
async fn assert_broken_chunk_truncates(after_hello: &str, forwarded: &[u8]) {
    let origin = Origin::start(vec![
        keep_open(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n{after_hello}"
        )),
        keep_open(SECOND),
    ])
    .await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = get(proxy).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body(), None, "truncated: {:?}", answer.text());
    assert_eq!(answer.raw_body(), forwarded, "{:?}", answer.text());
    eventually("the proxy closes the broken upstream connection", || {
        origin.closed_by_proxy() == 1
    })
    .await;
    let second = get(proxy).await;
    assert_eq!(second.body_text(), "second");
    assert_eq!(origin.connections(), 2);
}

#[tokio::test]
async fn a_non_hex_chunk_size_truncates_the_response_and_drops_the_connection() {
    assert_broken_chunk_truncates("zz\r\nmore\r\n0\r\n\r\n", b"5\r\nhello\r\n").await;
}

#[tokio::test]
async fn an_overflowing_chunk_size_truncates_the_response_and_drops_the_connection() {
    assert_broken_chunk_truncates(
        "ffffffffffffffffffff\r\nmore\r\n0\r\n\r\n",
        b"5\r\nhello\r\n",
    )
    .await;
}

#[tokio::test]
async fn a_missing_crlf_after_chunk_data_truncates_the_response_and_drops_the_connection() {
    // The chunk's data is relayed before the missing CRLF is noticed.
    assert_broken_chunk_truncates("4\r\nmoreXX0\r\n\r\n", b"5\r\nhello\r\n4\r\nmore\r\n").await;
}

#[tokio::test]
async fn bare_lf_line_endings_in_the_response_head_are_accepted() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\nContent-Length: 5\nX-Origin: lf\n\nhello",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "hello");
    assert_eq!(answer.header("x-origin").as_deref(), Some("lf"));
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn a_bare_cr_inside_a_response_header_value_answers_502_uc() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nX-Origin: a\rb\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn a_nul_inside_a_response_header_value_answers_502_uc() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nX-Origin: a\0b\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn an_obs_folded_response_header_answers_502_uc() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nX-Origin: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn a_close_delimited_body_arrives_whole_and_the_connection_is_not_reused() {
    let (answer, connections) = first_then_second(close_after(
        "HTTP/1.1 200 OK\r\nX-Origin: eof\r\n\r\nhello, until the end",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "hello, until the end");
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn a_100_continue_before_the_final_response_is_skipped() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "hello");
    assert!(
        !answer.text().contains("100 Continue"),
        "{:?}",
        answer.text()
    );
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn a_204_with_content_length_has_no_body_and_the_connection_is_reused() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    ))
    .await;
    assert_eq!(answer.status(), 204, "{:?}", answer.text());
    assert_eq!(answer.raw_body(), b"");
    assert_eq!(answer.header("content-length"), None, "dropped on the way");
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn a_304_with_content_length_has_no_body_and_the_connection_is_reused() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
    ))
    .await;
    assert_eq!(answer.status(), 304, "{:?}", answer.text());
    assert_eq!(answer.raw_body(), b"");
    assert_eq!(answer.header("content-length"), None, "dropped on the way");
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn a_head_answer_with_content_length_has_no_body_and_the_connection_is_reused() {
    let origin = Origin::start(vec![
        keep_open("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        keep_open(SECOND),
    ])
    .await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = send(
        proxy,
        "HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.header("content-length").as_deref(), Some("5"));
    assert_eq!(answer.raw_body(), b"");
    let second = get(proxy).await;
    assert_eq!(second.body_text(), "second");
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn connection_close_in_a_response_takes_a_new_connection_for_the_next_request() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "hello");
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn an_http_1_0_response_without_keep_alive_takes_a_new_connection_for_the_next_request() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert!(
        answer.raw.starts_with(b"HTTP/1.0 200 OK\r\n"),
        "the origin's version goes downstream: {:?}",
        answer.text()
    );
    assert_eq!(answer.body_text(), "hello");
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn a_pooled_connection_the_origin_closed_is_replaced_for_the_next_request() {
    let origin = Origin::start(vec![
        close_after("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        keep_open(SECOND),
    ])
    .await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = get(proxy).await;
    assert_eq!(answer.body_text(), "hello");
    eventually("the proxy sees the close and drops the connection", || {
        origin.closed_by_proxy() == 1
    })
    .await;
    let second = get(proxy).await;
    assert_eq!(second.status(), 200, "{:?}", second.text());
    assert_eq!(second.body_text(), "second");
    assert_eq!(origin.connections(), 2);
}

/// The race no pool can see coming: the origin closes a kept-alive connection just as the
/// next request goes out on it, and answers nothing. Nothing came back and GET is
/// idempotent, so the proxy sends the request again on a new connection.
#[tokio::test]
async fn a_get_lost_to_an_origin_closing_a_pooled_connection_is_sent_again() {
    let origin = Origin::start(vec![keep_open(OK), close_after(""), keep_open(SECOND)]).await;
    let (_server, proxy) = proxy_to(&origin);
    assert_eq!(get(proxy).await.body_text(), "ok");
    let second = get(proxy).await;
    assert_eq!(second.status(), 200, "{:?}", second.text());
    assert_eq!(second.body_text(), "second");
    assert_eq!(origin.connections(), 2);
    assert_eq!(
        origin.requests().len(),
        3,
        "the lost request, then its resend"
    );
}

/// The same race for a POST: the origin may have acted on it, so it is not sent again.
#[tokio::test]
async fn a_post_lost_to_an_origin_closing_a_pooled_connection_answers_502_uc() {
    let origin = Origin::start(vec![keep_open(OK), close_after(""), keep_open(SECOND)]).await;
    let (_server, proxy) = proxy_to(&origin);
    assert_eq!(get(proxy).await.body_text(), "ok");
    let post = send(
        proxy,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_bad_gateway_uc(&post);
    assert_eq!(origin.requests().len(), 2, "sent once");
}

#[tokio::test]
async fn a_one_mebibyte_chunked_response_arrives_intact() {
    let payload: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i * 7 % 251) as u8).collect();
    let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in payload.chunks(10_000) {
        reply.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        reply.extend_from_slice(chunk);
        reply.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(b"0\r\n\r\n");
    let (answer, connections) = first_then_second(keep_open(reply)).await;
    assert_eq!(answer.status(), 200);
    let body = answer.body().expect("a complete body");
    assert_eq!(body.len(), payload.len());
    assert!(
        body == payload,
        "the body differs from what the origin sent"
    );
    assert_eq!(connections, 1);
}

/// Trailers end the body; the connection goes back to the pool like any other.
#[tokio::test]
async fn trailers_in_a_chunked_response_leave_the_body_whole_and_keep_the_connection() {
    let (answer, connections) = first_then_second(keep_open(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
         5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n",
    ))
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "hello");
    assert!(
        !answer.text().contains("x-checksum: 42"),
        "trailers go only to a client that sent `TE: trailers`: {:?}",
        answer.text()
    );
    assert_eq!(connections, 1);
}

#[tokio::test]
async fn trailers_reach_a_client_that_accepts_them() {
    let origin = Origin::start(vec![
        keep_open(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
             5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n",
        ),
        keep_open(SECOND),
    ])
    .await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = send(
        proxy,
        "GET / HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(
        answer.raw_body(),
        b"5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n"
    );
    let requests = origin.requests();
    let (head, _) = split_request(&requests[0]);
    assert_eq!(
        header_values(head, "te"),
        ["trailers"],
        "forwarded upstream"
    );
    let second = get(proxy).await;
    assert_eq!(second.body_text(), "second");
    assert_eq!(origin.connections(), 1, "reused");
}

#[tokio::test]
async fn a_response_head_with_200_headers_answers_502_uc() {
    let mut reply = String::from("HTTP/1.1 200 OK\r\n");
    for n in 0..200 {
        reply.push_str(&format!("X-H{n}: {n}\r\n"));
    }
    reply.push_str("Content-Length: 5\r\n\r\nhello");
    let (answer, connections) = first_then_second(keep_open(reply)).await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2);
}

/// A response head is read into at most 64 KiB (Envoy's default limit is 60 KiB; hyper's
/// client buffers ~400 KiB): past that the origin is answered for with a 502.
#[tokio::test]
async fn a_response_head_over_64_kib_answers_502_uc() {
    let big = "v".repeat(100 * 1024);
    let (answer, connections) = first_then_second(keep_open(format!(
        "HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 5\r\n\r\nhello"
    )))
    .await;
    assert_bad_gateway_uc(&answer);
    assert_eq!(connections, 2);
}

// ---------------------------------------------------------------------------------------
// Request framing

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Sends `request` through a proxy to a fresh origin that answers `ok`; returns the
/// answer and the raw requests the origin received.
async fn forward(request: &[u8]) -> (Answer, Vec<Vec<u8>>) {
    let origin = Origin::start(vec![keep_open(OK)]).await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = send(proxy, request).await;
    (answer, origin.requests())
}

fn split_request(raw: &[u8]) -> (&[u8], &[u8]) {
    let end = find(raw, b"\r\n\r\n").unwrap() + 4;
    raw.split_at(end)
}

#[tokio::test]
async fn a_post_with_content_length_arrives_with_that_length_and_body() {
    let (answer, requests) = forward(
        b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello world",
    )
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(requests.len(), 1);
    let (head, body) = split_request(&requests[0]);
    assert_eq!(header_values(head, "content-length"), ["11"]);
    assert!(header_values(head, "transfer-encoding").is_empty());
    assert_eq!(body, b"hello world");
}

#[tokio::test]
async fn a_chunked_upload_arrives_chunked_with_the_same_payload() {
    let (answer, requests) = forward(
        b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(requests.len(), 1);
    let (head, body) = split_request(&requests[0]);
    assert_eq!(header_values(head, "transfer-encoding"), ["chunked"]);
    assert!(header_values(head, "content-length").is_empty());
    let (payload, used) = dechunk(body).expect("a complete chunked body");
    assert_eq!(payload, b"hello world");
    assert_eq!(used, body.len());
}

#[tokio::test]
async fn a_get_without_body_arrives_without_length_or_transfer_encoding() {
    let (answer, requests) = forward(GET.as_bytes()).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(requests.len(), 1);
    let (head, body) = split_request(&requests[0]);
    assert!(header_values(head, "content-length").is_empty());
    assert!(header_values(head, "transfer-encoding").is_empty());
    assert_eq!(body, b"");
}

/// A smuggling-shaped request the client's side (hyper's server) refuses with 400
/// before anything goes upstream.
async fn assert_refused(request: &[u8]) {
    let origin = Origin::start(vec![keep_open(OK)]).await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = send(proxy, request).await;
    assert_eq!(answer.status(), 400, "{:?}", answer.text());
    assert_eq!(origin.connections(), 0);
    assert!(origin.requests().is_empty());
}

#[tokio::test]
async fn a_request_with_content_length_and_chunked_goes_upstream_chunked_only() {
    let (answer, requests) = forward(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text());
    assert_eq!(requests.len(), 1, "only the first request goes upstream");
    let (head, body) = split_request(&requests[0]);
    assert!(head.starts_with(b"POST / HTTP/1.1\r\n"));
    assert_eq!(header_values(head, "transfer-encoding"), ["chunked"]);
    assert!(header_values(head, "content-length").is_empty());
    assert_eq!(dechunk(body).unwrap().0, b"hello");
    assert_eq!(
        answer.header("connection").as_deref(),
        Some("close"),
        "the proxy closes the client connection after it"
    );
}

#[tokio::test]
async fn a_request_with_transfer_encoding_xchunked_is_refused_with_400() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn a_request_with_two_different_content_lengths_is_refused_with_400() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    )
    .await;
}

/// The client's own malformed body is answered as the client's error (400), not charged to
/// the endpoint as an upstream reset.
#[tokio::test]
async fn a_request_with_a_non_hex_chunk_size_answers_400_and_sends_nothing_upstream() {
    let origin = Origin::start(vec![keep_open(OK)]).await;
    let (_server, proxy) = proxy_to(&origin);
    let answer = send(
        proxy,
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 400, "{:?}", answer.text());
    assert_eq!(answer.body_text(), "invalid request body\n");
    // The upstream connection was opened for the request, and closed before one byte
    // of it was written.
    eventually("the proxy closes the upstream connection", || {
        origin.closed_by_proxy() == 1
    })
    .await;
    assert_eq!(origin.connections(), 1);
    assert!(origin.requests().is_empty());
    assert_eq!(origin.incomplete(), 0);
}

#[tokio::test]
async fn a_request_with_a_nul_in_a_header_value_is_refused_with_400() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: t\r\nX-Client: a\0b\r\n\r\n").await;
}

#[tokio::test]
async fn a_request_with_a_bare_cr_in_a_header_value_is_refused_with_400() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: t\r\nX-Client: a\rb\r\n\r\n").await;
}
