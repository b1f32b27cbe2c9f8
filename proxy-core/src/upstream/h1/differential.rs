//! The same raw responses through this client and through hyper's: what each makes of
//! them must agree, except where this client is deliberately stricter (listed, with the
//! reason, in [`DIVERGENCES`]).

use std::future::poll_fn;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::{Connection, ResponseStream, send};
use crate::cluster::{Cluster, ClusterOptions};
use crate::http::RequestBody;
use crate::net::Stream;
use crate::upstream::Pool;

/// What a client made of a response: its status, its end-to-end fields, and its body
/// (`None` when reading it failed), or `Err` when the head was refused.
type Verdict = Result<(u16, Vec<(String, String)>, Option<Vec<u8>>), ()>;

/// Responses on which this client and hyper's are meant to differ, and why.
const DIVERGENCES: &[(&str, &str)] = &[
    (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "chunked applied twice has no trustworthy framing (RFC 9112 §7.1); hyper reads it once",
    ),
    (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "as above",
    ),
];

fn corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 5 \r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n005\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.0 200 OK\r\n\r\nhello until close",
        "HTTP/1.1 200 OK\r\n\r\nhello until close",
        "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nX Y: a\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nX:\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nX: \u{e9}t\u{e9}\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 299 Whatever\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 099 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "http/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        "HTTP/1.1 200 OK\r\nContent-Le",
        "",
        "garbage\r\n\r\n",
    ]
    .iter()
    .map(|raw| raw.to_string())
    .collect();
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    corpus.push(format!(
        "HTTP/1.1 200 OK\r\n{many}Content-Length: 5\r\n\r\nhello"
    ));
    corpus.extend(DIVERGENCES.iter().map(|(raw, _)| raw.to_string()));
    corpus
}

/// Serves `raw` on one end of a socket pair and closes it; returns the other end.
async fn origin(raw: &str) -> UnixStream {
    let (client, mut server) = UnixStream::pair().unwrap();
    let raw = raw.as_bytes().to_vec();
    tokio::spawn(async move {
        // Read the request first, as an origin would, so neither side sees a reset.
        let mut request = vec![0; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut server, &mut request).await;
        let _ = server.write_all(&raw).await;
        let _ = server.shutdown().await;
        // Keep the socket until the client is done, so a close reads as end of stream.
        let _ = tokio::io::AsyncReadExt::read(&mut server, &mut request).await;
    });
    client
}

/// The fields that go on downstream: those that frame the message or describe the
/// connection are dropped (the proxy removes them either way: this client before they
/// are stored, hyper's by the hop-by-hop rules), and so is a `Content-Length` beside
/// `Transfer-Encoding`; repeats of one `Content-Length` count once.
fn end_to_end(headers: &HeaderMap) -> Vec<(String, String)> {
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let mut fields: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding"
            ) && (*name != header::CONTENT_LENGTH || !chunked)
        })
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    fields.sort();
    fields.dedup_by(|a, b| a.0 == "content-length" && a == b);
    fields
}

async fn through_hyper(raw: &str) -> Verdict {
    let stream = origin(raw).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ())?;
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", "o")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.map_err(|_| ())?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .ok()
        .map(|body| body.to_bytes().to_vec());
    Ok((parts.status.as_u16(), end_to_end(&parts.headers), body))
}

async fn through_ours(raw: &str, cluster: &Cluster) -> Verdict {
    let stream = origin(raw).await;
    let conn = Connection::new(Stream::Unix(stream), cluster.open_connection_for_tests());
    let (parts, ()) = Request::get("/")
        .header("host", "o")
        .body(())
        .unwrap()
        .into_parts();
    let pool = Pool::new(1, Duration::from_secs(60));
    let exchanged = send(conn, &parts, &mut RequestBody::empty(), &pool, &mut None)
        .await
        .map_err(|_| ())?;
    let (head, mut stream) = ResponseStream::new(exchanged, pool);
    let mut body = Some(Vec::new());
    while let Some(frame) = poll_fn(|cx| stream.poll_frame(cx)).await {
        match frame {
            Ok(frame) => {
                if let (Some(body), Some(data)) = (body.as_mut(), frame.data_ref()) {
                    body.extend_from_slice(data);
                }
            }
            Err(_) => {
                body = None;
                break;
            }
        }
    }
    Ok((head.status.as_u16(), end_to_end(&head.headers), body))
}

#[tokio::test]
async fn agrees_with_hyper_on_every_response_but_the_listed_ones() {
    let cluster = Cluster::new("differential", Vec::new(), ClusterOptions::DEFAULT);
    let mut disagreements = Vec::new();
    for raw in corpus() {
        let hyper = through_hyper(&raw).await;
        let ours = through_ours(&raw, &cluster).await;
        let expected_to_differ = DIVERGENCES.iter().any(|(known, _)| *known == raw);
        if (hyper != ours) != expected_to_differ {
            disagreements.push(format!(
                "{raw:?}\n    hyper: {hyper:?}\n    ours:  {ours:?}\n    listed as a divergence: {expected_to_differ}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "\n{}", disagreements.join("\n"));
}
