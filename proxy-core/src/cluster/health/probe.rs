//! One health check exchange per kind, each on a fresh connection to one endpoint.

use std::fmt;
use std::future::Future;

use bytes::{Buf, Bytes};
use http::{Request, header};
use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{HealthCheck, HealthCheckKind};
use crate::cluster::{Cluster, Endpoint};
use crate::net::Stream;
use crate::upstream::{connect, connect_tls};

/// The most a check reads from a peer: a health answer is tiny.
const READ_LIMIT: usize = 64 * 1024;

/// Envoy's response header naming the service a health check reached.
const SERVICE_NAME_HEADER: &str = "x-envoy-upstream-healthchecked-cluster";

/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const GRPC_SERVING: u64 = 1;

/// How a check failed, which decides how fast it counts (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// No usable answer: connect or I/O error, timeout, peer closed early.
    Network,
    /// The peer answered, and the answer means "unhealthy".
    Active,
}

/// Why one health check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    kind: FailureKind,
    reason: String,
}

impl Failure {
    pub(super) fn network(reason: impl fmt::Display) -> Self {
        Self {
            kind: FailureKind::Network,
            reason: reason.to_string(),
        }
    }

    pub(super) fn active(reason: impl fmt::Display) -> Self {
        Self {
            kind: FailureKind::Active,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn kind(&self) -> FailureKind {
        self.kind
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Runs one check of `endpoint` (of `cluster`) within its timeout.
pub(super) async fn probe(
    cluster: &Cluster,
    endpoint: &Endpoint,
    check: &HealthCheck,
) -> Result<(), Failure> {
    let exchange = async {
        let stream = dial(cluster, endpoint, check).await?;
        match check.kind {
            HealthCheckKind::Http {
                path,
                host,
                expected_statuses,
                service_name_header,
            } => {
                let host = host.unwrap_or(cluster.name);
                let verify = service_name_header.inspect(|_| {
                    cluster.health.stats.verify_cluster.inc();
                });
                http(stream, path, host, expected_statuses, verify).await
            }
            HealthCheckKind::Tcp { send, expect } => tcp(stream, send, expect).await,
            HealthCheckKind::Grpc { service_name } => {
                let secure = cluster.tls.is_some();
                grpc(stream, cluster.name, secure, service_name).await
            }
            HealthCheckKind::Redis => redis(stream).await,
        }
    };
    match tokio::time::timeout(check.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Failure::network(format_args!(
            "timed out after {:?}",
            check.timeout
        ))),
    }
}

/// A fresh connection to exactly this endpoint's address; never pooled.
async fn dial(
    cluster: &Cluster,
    endpoint: &Endpoint,
    check: &HealthCheck,
) -> Result<Stream, Failure> {
    let address = endpoint.address();
    let dialled = match &cluster.tls {
        None => connect(address, check.timeout).await,
        Some(tls) => {
            let server_name = cluster.tls_server_name(endpoint);
            connect_tls(address, check.timeout, tls, server_name).await
        }
    };
    dialled.map_err(Failure::network)
}

/// Drives `connection` alongside `work`; if the connection ends first, `work` still
/// gets to finish from what was already received (or fails as the connection is gone).
async fn drive<C, W, T>(connection: C, work: W) -> Result<T, Failure>
where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = Result<T, Failure>>,
{
    tokio::pin!(connection, work);
    tokio::select! {
        biased;
        result = &mut work => return result,
        result = &mut connection => {
            if let Err(error) = result {
                return Err(Failure::network(format_args!("connection failed: {error}")));
            }
        }
    }
    work.await
}

async fn http(
    stream: Stream,
    path: &'static str,
    host: &str,
    expected_statuses: &[(u16, u16)],
    service_name: Option<&str>,
) -> Result<(), Failure> {
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|error| Failure::network(format_args!("HTTP handshake failed: {error}")))?;
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "proxy-core/HC")
        .header(header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|error| Failure::active(format_args!("invalid health check request: {error}")))?;
    let response = drive(connection, async {
        sender
            .send_request(request)
            .await
            .map_err(|error| Failure::network(format_args!("HTTP exchange failed: {error}")))
    })
    .await?;
    let status = response.status().as_u16();
    if !expected_statuses
        .iter()
        .any(|&(low, high)| (low..=high).contains(&status))
    {
        return Err(Failure::active(format_args!(
            "HTTP status {status} is not expected"
        )));
    }
    if let Some(expected) = service_name {
        let named = response.headers().get(SERVICE_NAME_HEADER);
        if named.is_none_or(|value| value.as_bytes() != expected.as_bytes()) {
            return Err(Failure::active(format_args!(
                "{SERVICE_NAME_HEADER} is {named:?}, expected {expected:?}"
            )));
        }
    }
    Ok(())
}

async fn tcp(
    mut stream: Stream,
    send: Option<&[u8]>,
    expect: Option<&[u8]>,
) -> Result<(), Failure> {
    if let Some(payload) = send {
        write_all(&mut stream, payload).await?;
    }
    let Some(expected) = expect else {
        return Ok(());
    };
    let mut received = Vec::new();
    loop {
        if contains(&received, expected) {
            return Ok(());
        }
        read_some(&mut stream, &mut received).await?;
    }
}

async fn redis(mut stream: Stream) -> Result<(), Failure> {
    write_all(&mut stream, b"PING\r\n").await?;
    let mut received = Vec::new();
    while !contains(&received, b"\r\n") {
        read_some(&mut stream, &mut received).await?;
    }
    if received.starts_with(b"+PONG\r\n") {
        Ok(())
    } else {
        let line = received.split(|&byte| byte == b'\r').next().unwrap_or(&[]);
        Err(Failure::active(format_args!(
            "Redis answered {:?} to PING",
            String::from_utf8_lossy(line)
        )))
    }
}

async fn write_all(stream: &mut Stream, bytes: &[u8]) -> Result<(), Failure> {
    stream
        .write_all(bytes)
        .await
        .map_err(|error| Failure::network(format_args!("write failed: {error}")))
}

/// Appends what the peer sends next; end of stream or too much data is a failure.
async fn read_some(stream: &mut Stream, received: &mut Vec<u8>) -> Result<(), Failure> {
    if received.len() >= READ_LIMIT {
        return Err(Failure::network(format_args!(
            "no expected answer in the first {READ_LIMIT} bytes"
        )));
    }
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) => Err(Failure::network("peer closed before the expected answer")),
        Ok(n) => {
            received.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
            Ok(())
        }
        Err(error) => Err(Failure::network(format_args!("read failed: {error}"))),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

async fn grpc(
    stream: Stream,
    authority: &str,
    secure: bool,
    service_name: Option<&str>,
) -> Result<(), Failure> {
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|error| Failure::network(format_args!("HTTP/2 handshake failed: {error}")))?;
    let uri = http::Uri::builder()
        .scheme(if secure { "https" } else { "http" })
        .authority(authority)
        .path_and_query("/grpc.health.v1.Health/Check")
        .build()
        .map_err(|error| Failure::active(format_args!("invalid gRPC authority: {error}")))?;
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, "proxy-core/HC")
        .body(Full::new(encode_check_request(service_name.unwrap_or(""))))
        .map_err(|error| Failure::active(format_args!("invalid gRPC request: {error}")))?;
    let (head, body) = drive(connection, async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| Failure::network(format_args!("gRPC exchange failed: {error}")))?;
        let (head, body) = response.into_parts();
        let body = Limited::new(body, READ_LIMIT)
            .collect()
            .await
            .map_err(|error| Failure::network(format_args!("gRPC body failed: {error}")))?;
        Ok((head, body))
    })
    .await?;
    if head.status != http::StatusCode::OK {
        return Err(Failure::active(format_args!(
            "gRPC health answered HTTP {}",
            head.status
        )));
    }
    // A trailers-only reply carries grpc-status in the head.
    let grpc_status = body
        .trailers()
        .and_then(|trailers| trailers.get("grpc-status"))
        .or_else(|| head.headers.get("grpc-status"))
        .map(|value| value.as_bytes().to_vec());
    match grpc_status.as_deref() {
        Some(b"0") => {}
        Some(other) => {
            return Err(Failure::active(format_args!(
                "gRPC status {}",
                String::from_utf8_lossy(other)
            )));
        }
        None => return Err(Failure::network("gRPC reply without grpc-status")),
    }
    let status = decode_check_response(body.to_bytes()).map_err(Failure::active)?;
    if status == GRPC_SERVING {
        Ok(())
    } else {
        Err(Failure::active(format_args!(
            "gRPC serving status {status}, not SERVING"
        )))
    }
}

/// A length-prefixed `HealthCheckRequest { service = 1 }`.
fn encode_check_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 8);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(buf: &mut Bytes) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err("truncated varint");
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long")
}

/// The `status` (field 1) of the first length-prefixed `HealthCheckResponse` in
/// `body`; 0 (`UNKNOWN`) when the field is absent, as protobuf defaults it.
fn decode_check_response(mut body: Bytes) -> Result<u64, String> {
    if body.remaining() < 5 {
        return Err("gRPC reply without a message".to_owned());
    }
    if body.get_u8() != 0 {
        return Err("compressed gRPC health reply".to_owned());
    }
    let length = usize::try_from(body.get_u32()).unwrap_or(usize::MAX);
    if body.remaining() < length {
        return Err("truncated gRPC health reply".to_owned());
    }
    let mut message = body.split_to(length);
    let mut status = 0;
    while message.has_remaining() {
        let key = get_varint(&mut message)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut message)?,
            (_, 0) => {
                get_varint(&mut message)?;
            }
            (_, 1) => skip(&mut message, 8)?,
            (_, 2) => {
                let len = usize::try_from(get_varint(&mut message)?).unwrap_or(usize::MAX);
                skip(&mut message, len)?;
            }
            (_, 5) => skip(&mut message, 4)?,
            (_, wire) => return Err(format!("unsupported protobuf wire type {wire}")),
        }
    }
    Ok(status)
}

fn skip(buf: &mut Bytes, len: usize) -> Result<(), &'static str> {
    if buf.remaining() < len {
        return Err("truncated protobuf field");
    }
    buf.advance(len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encodes_service_as_field_one() {
        let framed = encode_check_request("svc");
        assert_eq!(&framed[..], &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']);
        assert_eq!(&encode_check_request("")[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn response_decodes_status_and_skips_unknown_fields() {
        let serving = Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1]);
        assert_eq!(decode_check_response(serving), Ok(1));
        let with_unknown = Bytes::from_static(&[0, 0, 0, 0, 6, 0x12, 2, b'h', b'i', 0x08, 2]);
        assert_eq!(decode_check_response(with_unknown), Ok(2));
        assert_eq!(
            decode_check_response(Bytes::from_static(&[0, 0, 0, 0, 0])),
            Ok(0)
        );
        assert!(decode_check_response(Bytes::from_static(&[0, 0, 0, 0, 9, 0x08])).is_err());
        assert!(decode_check_response(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn contains_finds_expected_bytes_anywhere() {
        assert!(contains(b"hello world", b"o w"));
        assert!(!contains(b"hel", b"hello"));
        assert!(contains(b"", b""));
    }
}
