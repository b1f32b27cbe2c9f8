//! The relay path: a bodiless HTTP/1.1 request on a route without filters, proxied from
//! its raw head to an HTTP/1.1 origin and back without building a request, a response
//! or a header map.
//!
//! The full path parses the head into a `HeaderMap`, runs the exchange (a state machine
//! of several kilobytes), encodes a new head from the map upstream, parses the
//! response into another map and encodes it again downstream: most of a small
//! request's user-space cost. For the requests the relay takes, the codec instead
//! routes on the raw head ([`RawRequest`]), writes the upstream head straight from the
//! client's bytes with the connection manager's edits (see [`encode_request`]), and the
//! response head is copied field by field the same way (`write::relayed_head`). The
//! body is read and written by the same code as on the full path.
//!
//! What the relay does is what the full path does for the same request, step by step:
//! the same counters (`downstream_rq_*`, `upstream_rq_*`, `upstream_cx_reuse`), the
//! circuit breakers' admission, outlier detection, the route timeout (from the head, a
//! bodiless request being whole then), the retry of a request that met a stale pooled
//! connection, the same local replies (`UH`, `UF`, `UC`, `UT`, `UO`), and the abandoning
//! of a request whose client went away. A response head the relay cannot pass on as it
//! is (chunked, close-delimited, a `Connection` naming fields, a `101`) is read by the
//! full rules and written by the full path's writer. Which requests it takes is decided
//! in `head::parse` and [`Relay::of`](crate::route::Relay::of); `downstream_differential`
//! runs the relay against hyper's server on the same inputs.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;

use http::{Method, Response, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::{Client, Io, lock};
use super::head::RelayHead;
use super::write::{self, Answering};
use crate::cluster::{Cluster, Endpoint, UpstreamError};
use crate::http::wire::{field, is_hop_by_hop, is_lowercase};
use crate::http::{
    Downstream, LocalReply, ResponseBody, local_reply, prepare_response, request_id,
};
use crate::route::{RawRequest, Relay};
use crate::stats::GaugeGuard;
use crate::tls::TlsSession;
use crate::upstream::h1::{self, Connection, relay};

/// What the relay answered with.
pub(super) enum Relayed {
    /// The response head is in the connection's write buffer; `body` follows it.
    Head {
        status: StatusCode,
        framing: write::Framing,
        body: ResponseBody,
        /// The head says the connection closes after this response.
        close: bool,
    },
    /// A response for the full path's writer: a local reply, or a response the relay
    /// could not pass on as it came.
    /// Boxed: twice the size of the head's variant, which every relayed request
    /// moves through the connection task.
    Response(Box<Response<ResponseBody>>),
}

/// Writes the head the full path would send upstream for `request` (a bodiless request
/// in origin form, whose `Connection` names nothing but `close`/`keep-alive`), into
/// `buf`. `false` when the request carries a field the relay leaves to the full path:
/// then `buf` is to be discarded.
///
/// The edits are the connection manager's (`http::headers::sanitize_request`) and the
/// upstream codec's: hop-by-hop fields and `Expect` dropped (`TE: trailers` kept),
/// `x-forwarded-for` appended to (or set) with the client's address, `x-forwarded-proto`
/// set, `x-request-id` generated when absent, a client's `x-forwarded-client-cert`
/// dropped, one `Content-Length`, and `Content-Length: 0` on a bodiless POST, PUT or
/// PATCH. Names go as the client wrote them (the full path lowercases them, as its
/// header map does; field names are case-insensitive, and nginx and HAProxy keep them
/// too).
pub(super) fn encode_request(
    buf: &mut Vec<u8>,
    request: &RawRequest<'_>,
    downstream: &Downstream,
    session: Option<&TlsSession>,
) -> bool {
    // A verified client certificate is forwarded as `x-forwarded-client-cert`, which the
    // full path builds.
    if session.is_some_and(|session| session.client().is_some()) {
        return false;
    }
    buf.clear();
    buf.extend_from_slice(request.method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(request.target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    let mut te_seen = false;
    let mut te_trailers = false;
    let mut forwarded_for = false;
    let mut request_id = false;
    let mut content_length = false;
    for (name, value) in request.spans.fields(request.head) {
        if is_hop_by_hop(name) {
            // Only the first `TE` counts, as the full path reads it (`HeaderMap::get`).
            if !te_seen && is_lowercase(name, b"te") {
                te_seen = true;
                te_trailers = value.eq_ignore_ascii_case(b"trailers");
            }
            continue;
        }
        match Edit::of(name) {
            Edit::Keep => {}
            Edit::Drop => continue,
            Edit::ForwardedFor if downstream.peer.is_some() => {
                forwarded_for = true;
                continue;
            }
            Edit::ForwardedFor => {}
            Edit::RequestId => request_id = true,
            Edit::ContentLength if content_length => continue,
            Edit::ContentLength => content_length = true,
            Edit::ContentType if value.starts_with(b"application/grpc") => return false,
            Edit::ContentType => {}
        }
        field(buf, name, value);
    }
    if te_trailers {
        buf.extend_from_slice(b"te: trailers\r\n");
    }
    if let Some(peer) = &downstream.peer {
        buf.extend_from_slice(b"x-forwarded-for: ");
        if forwarded_for {
            // Earlier hops, joined as the full path joins them: values that are not
            // visible ASCII are left out.
            for (name, value) in request.spans.fields(request.head) {
                if Edit::of(name) == Edit::ForwardedFor && value.iter().all(is_visible) {
                    buf.extend_from_slice(value);
                    buf.extend_from_slice(b", ");
                }
            }
        }
        buf.extend_from_slice(peer.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"x-forwarded-proto: ");
    buf.extend_from_slice(downstream.scheme.as_bytes());
    buf.extend_from_slice(b"\r\n");
    if !request_id && downstream.generate_request_id {
        buf.extend_from_slice(b"x-request-id: ");
        buf.extend_from_slice(&request_id::uuid());
        buf.extend_from_slice(b"\r\n");
    }
    if !content_length && matches!(*request.method, Method::POST | Method::PUT | Method::PATCH) {
        buf.extend_from_slice(b"content-length: 0\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    true
}

/// As `HeaderValue::to_str` accepts.
fn is_visible(b: &u8) -> bool {
    *b == b'\t' || (0x20..0x7f).contains(b)
}

/// What [`encode_request`] does with a (non-hop-by-hop) field.
#[derive(Debug, PartialEq, Eq)]
enum Edit {
    Keep,
    /// `Expect` (a bodiless request has nothing to continue), `x-forwarded-proto` (set
    /// by the proxy), `x-forwarded-client-cert` (a client cannot vouch for itself).
    Drop,
    ForwardedFor,
    RequestId,
    ContentLength,
    ContentType,
}

impl Edit {
    fn of(name: &[u8]) -> Self {
        match name.len() {
            6 if is_lowercase(name, b"expect") => Edit::Drop,
            12 if is_lowercase(name, b"x-request-id") => Edit::RequestId,
            12 if is_lowercase(name, b"content-type") => Edit::ContentType,
            14 if is_lowercase(name, b"content-length") => Edit::ContentLength,
            15 if is_lowercase(name, b"x-forwarded-for") => Edit::ForwardedFor,
            17 if is_lowercase(name, b"x-forwarded-proto") => Edit::Drop,
            23 if is_lowercase(name, b"x-forwarded-client-cert") => Edit::Drop,
            _ => Edit::Keep,
        }
    }
}

/// How the wait for the origin's answer ended.
enum Waited {
    Answer(Box<Connection>, relay::Answer),
    Failed(UpstreamError),
    TimedOut,
    ClientGone,
}

/// Where the request is on its way upstream.
enum Stage<'c> {
    Connecting(Pin<Box<dyn Future<Output = Result<Box<Connection>, UpstreamError>> + Send + 'c>>),
    Exchanging(Box<Connection>, relay::Sending),
    Done,
}

/// Proxies the request whose upstream head is in `io`'s write buffer to `relay`'s
/// cluster and returns its answer; `None` if the client went away first. Whether the
/// connection closes after a relayed head is decided when the head is written (the
/// client's keep-alive, and whether the server drains by then), as the full path does.
pub(super) async fn exchange(
    io: &Mutex<Io>,
    head: &RelayHead,
    answering: Answering,
    downstream: &Downstream,
    draining: &watch::Receiver<bool>,
) -> Option<Relayed> {
    let stats = &downstream.stats;
    stats.downstream_rq_total.inc();
    let _active = GaugeGuard::new(&stats.downstream_rq_active);
    let Relay { cluster, policy } = head.relay;
    let relayed = match cluster.pick() {
        None => Relayed::Response(Box::new(local_reply(LocalReply::NoHealthyUpstream, stats))),
        Some(endpoint) => {
            let deadline = policy
                .timeout
                .and_then(|timeout| Instant::now().checked_add(timeout));
            forward(
                io,
                cluster,
                endpoint,
                &head.method,
                deadline,
                downstream,
                answering,
                head.keep_alive,
                draining,
            )
            .await?
        }
    };
    let status = match &relayed {
        Relayed::Head { status, .. } => *status,
        Relayed::Response(response) => response.status(),
    };
    stats.count_status(status.as_u16());
    Some(match relayed {
        // Local replies carry a body; a HEAD response must not (as on the full path).
        Relayed::Response(mut response) if answering.is_head => {
            *response.body_mut() = ResponseBody::empty();
            Relayed::Response(response)
        }
        relayed => relayed,
    })
}

#[allow(clippy::too_many_arguments)] // one caller; a struct would only rename them
async fn forward(
    io: &Mutex<Io>,
    cluster: &'static Cluster,
    endpoint: &'static Endpoint,
    method: &Method,
    deadline: Option<Instant>,
    downstream: &Downstream,
    answering: Answering,
    keep_alive: bool,
    draining: &watch::Receiver<bool>,
) -> Option<Relayed> {
    let stats = &downstream.stats;
    let in_flight = match cluster.admit(endpoint) {
        Ok(in_flight) => in_flight,
        Err(error) => {
            tracing::debug!(cluster = cluster.name(), %error, "upstream overflow");
            return Some(Relayed::Response(Box::new(local_reply(
                LocalReply::UpstreamOverflow,
                stats,
            ))));
        }
    };
    let connect = || -> Stage<'static> {
        match cluster.pooled_http1_connection(endpoint) {
            Some(mut conn) => {
                relay::begin(&mut conn);
                Stage::Exchanging(conn, relay::Sending::default())
            }
            None => Stage::Connecting(Box::pin(cluster.http1_connection(endpoint))),
        }
    };
    let mut stage = connect();
    let mut timer = deadline.map(|deadline| downstream.route_timer.lend(deadline));
    let mut write_framing = write::Framing::None;
    let mut close = false;
    let waited = poll_fn(|cx| {
        // One lock for the whole poll: the upstream exchange writes from (and into) the
        // connection's write buffer, and the client is watched through its read side.
        let mut shared = lock(io);
        let shared = &mut *shared;
        loop {
            match &mut stage {
                Stage::Connecting(connecting) => match connecting.as_mut().poll(cx) {
                    Poll::Ready(Ok(mut conn)) => {
                        relay::begin(&mut conn);
                        stage = Stage::Exchanging(conn, relay::Sending::default());
                        continue;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Waited::Failed(error)),
                    Poll::Pending => {}
                },
                Stage::Exchanging(conn, sending) => {
                    let polled = relay::poll_exchange(
                        conn,
                        cx,
                        &mut shared.write_buf,
                        sending,
                        method,
                        |buf, response| {
                            close = !keep_alive || *draining.borrow();
                            write_framing = write::relayed_head(buf, response, answering, close);
                        },
                    );
                    match polled {
                        Poll::Ready(Ok(answer)) => {
                            let done = std::mem::replace(&mut stage, Stage::Done);
                            let Stage::Exchanging(conn, _) = done else {
                                unreachable!("matched above");
                            };
                            return Poll::Ready(Waited::Answer(conn, answer));
                        }
                        Poll::Ready(Err(error)) if relay::is_stale(conn, sending, method) => {
                            // The origin had closed an idle connection and saw nothing of
                            // the request: it goes out again, unchanged.
                            tracing::debug!(
                                cluster = cluster.name(),
                                %error,
                                "pooled connection was closed; sending again"
                            );
                            stage = connect();
                            continue;
                        }
                        Poll::Ready(Err(error)) => {
                            let error = UpstreamError::Reset(Box::new(error));
                            return Poll::Ready(Waited::Failed(error));
                        }
                        Poll::Pending => {}
                    }
                }
                Stage::Done => unreachable!("polled after completion"),
            }
            match shared.poll_client(cx) {
                Client::Quiet => {}
                Client::Sent => continue,
                Client::Gone => return Poll::Ready(Waited::ClientGone),
            }
            if timer.as_mut().is_some_and(|timer| timer.poll_expired(cx)) {
                return Poll::Ready(Waited::TimedOut);
            }
            return Poll::Pending;
        }
    })
    .await;
    drop(timer);
    let (route, name) = (cluster.name(), endpoint.address());
    Some(match waited {
        Waited::Answer(
            conn,
            relay::Answer::Relayed {
                status,
                framing,
                keep_alive,
            },
        ) => {
            cluster.count_response(endpoint, status.as_u16());
            let pool = endpoint.pool();
            let whole = {
                let mut shared = lock(io);
                let out = &mut shared.write_buf;
                relay::take_whole_body(conn, framing, keep_alive, pool, out, write::COPY_LIMIT)
            };
            match whole {
                Ok(()) => {
                    // The body is behind the head already; the request is over upstream.
                    drop(in_flight);
                    Relayed::Head {
                        status,
                        framing: write::Framing::None,
                        body: ResponseBody::empty(),
                        close,
                    }
                }
                Err(conn) => Relayed::Head {
                    status,
                    close,
                    framing: write_framing,
                    body: ResponseBody::http1(
                        relay::body(conn, framing, keep_alive, pool.clone()),
                        in_flight,
                    ),
                },
            }
        }
        Waited::Answer(conn, relay::Answer::Generic) => match relay::generic_head(conn, method) {
            Ok(exchanged) => {
                cluster.count_response(endpoint, exchanged.head.status.as_u16());
                let mut response = Cluster::http1_response(exchanged, endpoint, in_flight);
                prepare_response(&mut response);
                Relayed::Response(Box::new(response))
            }
            Err(error) => failed(
                cluster,
                endpoint,
                UpstreamError::Reset(Box::new(error)),
                stats,
            ),
        },
        Waited::Failed(error) => failed(cluster, endpoint, error, stats),
        Waited::TimedOut => {
            // Dropping the exchange closed its connection: it has a request in flight
            // whose response nobody will read.
            cluster.record_timeout(endpoint);
            cluster.stats().upstream_rq_timeout.inc();
            tracing::debug!(cluster = route, endpoint = %name, "upstream timeout");
            Relayed::Response(Box::new(local_reply(LocalReply::UpstreamTimeout, stats)))
        }
        Waited::ClientGone => {
            // The origin has the whole request and acts on it: its answer is read in the
            // background so the connection goes back to the pool (as on the full path).
            if let Stage::Exchanging(conn, sending) = stage
                && sending.is_done()
            {
                let pool = endpoint.pool().clone();
                h1::finish_in_background(conn, method.clone(), pool, Some(in_flight));
            }
            return None;
        }
    })
}

/// The local reply for a request that got no response, counted as `Cluster::send`
/// counts it.
fn failed(
    cluster: &Cluster,
    endpoint: &Endpoint,
    error: UpstreamError,
    stats: &crate::stats::ListenerStats,
) -> Relayed {
    cluster.count_failure(endpoint, &error);
    let reply = match &error {
        UpstreamError::Connect(_) => LocalReply::ConnectFailure,
        UpstreamError::Reset(_) | UpstreamError::Downstream(_) => LocalReply::UpstreamReset,
        UpstreamError::Overflow(_) => LocalReply::UpstreamOverflow,
    };
    tracing::debug!(cluster = cluster.name(), endpoint = %endpoint.address(), %error, "upstream failure");
    Relayed::Response(Box::new(local_reply(reply, stats)))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::route::RoutePolicy;

    /// The upstream head the relay encodes for `raw` from a client at 10.0.0.1, as
    /// (lowercase name, value) pairs after the request line; `None` if it declines.
    fn encoded(raw: &str) -> Option<(String, Vec<(String, String)>)> {
        static POLICY: RoutePolicy = RoutePolicy::new("t", None);
        let downstream = Downstream::new(Some([10, 0, 0, 1].into()), "t", Default::default());
        let cluster: &'static Cluster = Box::leak(Box::new(Cluster::new(
            "t",
            Vec::new(),
            crate::cluster::ClusterOptions::DEFAULT,
        )));
        let mut out = Vec::new();
        let mut buf = BytesMut::from(raw);
        let parsed = super::super::head::parse(&mut buf, |request| {
            encode_request(&mut out, request, &downstream, None).then_some(Relay {
                cluster,
                policy: &POLICY,
            })
        })
        .unwrap()
        .unwrap();
        if !matches!(parsed, super::super::head::Parsed::Relay(_)) {
            return None;
        }
        let text = String::from_utf8(out).unwrap();
        let (head, rest) = text.split_once("\r\n").unwrap();
        assert!(rest.ends_with("\r\n\r\n"), "{rest:?}");
        let fields = rest
            .trim_end()
            .lines()
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_ascii_lowercase(), value.to_owned())
            })
            .collect();
        Some((head.to_owned(), fields))
    }

    fn get<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn the_connection_managers_edits_are_made_on_the_raw_head() {
        let (line, fields) = encoded(
            "GET /a?b HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\
             X-Forwarded-Proto: https\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\
             TE: trailers\r\nExpect: 100-continue\r\nX-Request-Id: abc\r\nAccept: */*\r\n\
             X-Forwarded-For: 5.6.7.8\r\nX-Forwarded-Client-Cert: forged\r\n\r\n",
        )
        .unwrap();
        assert_eq!(line, "GET /a?b HTTP/1.1");
        assert_eq!(get(&fields, "host"), ["h"]);
        assert_eq!(get(&fields, "accept"), ["*/*"]);
        assert_eq!(get(&fields, "x-request-id"), ["abc"]);
        assert_eq!(get(&fields, "te"), ["trailers"]);
        assert_eq!(
            get(&fields, "x-forwarded-for"),
            ["1.2.3.4, 5.6.7.8, 10.0.0.1"]
        );
        assert_eq!(get(&fields, "x-forwarded-proto"), ["http"]);
        for gone in [
            "connection",
            "keep-alive",
            "expect",
            "x-forwarded-client-cert",
        ] {
            assert!(get(&fields, gone).is_empty(), "{gone} in {fields:?}");
        }
        assert_eq!(fields.len(), 6, "{fields:?}");
    }

    #[test]
    fn a_bodiless_post_says_so_and_gets_a_request_id() {
        let (line, fields) = encoded("POST /p HTTP/1.0\r\nTE: gzip\r\n\r\n").unwrap();
        assert_eq!(line, "POST /p HTTP/1.1");
        assert_eq!(get(&fields, "content-length"), ["0"]);
        assert!(get(&fields, "te").is_empty());
        let id = get(&fields, "x-request-id");
        assert_eq!(id.len(), 1);
        assert_eq!(id[0].len(), 36);
        // One `Content-Length`, however many identical ones came.
        let (_, fields) =
            encoded("PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        assert_eq!(get(&fields, "content-length"), ["0"]);
    }

    #[test]
    fn grpc_requests_take_the_full_path() {
        assert!(
            encoded("GET /s/m HTTP/1.1\r\nHost: h\r\nContent-Type: application/grpc\r\n\r\n")
                .is_none()
        );
    }
}
