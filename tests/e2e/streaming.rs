//! 1 GiB each way through the release `edge` and its Unix-socket cluster (`hugo`), with
//! the proxy's peak memory bounded: bodies must stream, never be buffered whole.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use proxy_tests::client::bounded_by;
use proxy_tests::*;

const GIB: u64 = 1 << 30;
/// Peak RSS the proxy may reach while moving 1 GiB.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const CHUNK: usize = 256 * 1024;
/// Pattern period: a prime, so chunk boundaries never line up with it.
const PERIOD: u64 = 251;
/// Bound for one whole transfer (generous: the machine may be busy).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(180);

/// Byte at `offset` of the uploaded body.
fn pattern_byte(offset: u64) -> u8 {
    (offset % PERIOD) as u8
}

/// A request body generated on the fly: `total` bytes of the pattern in `CHUNK`-sized
/// frames, each a zero-copy slice of one precomputed block.
struct PatternBody {
    block: Bytes,
    sent: u64,
    total: u64,
}

impl PatternBody {
    fn new(total: u64) -> Self {
        let block: Vec<u8> = (0..(CHUNK as u64 + PERIOD)).map(pattern_byte).collect();
        Self {
            block: Bytes::from(block),
            sent: 0,
            total,
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent >= this.total {
            return Poll::Ready(None);
        }
        let len = (this.total - this.sent).min(CHUNK as u64) as usize;
        let phase = (this.sent % PERIOD) as usize;
        this.sent += len as u64;
        Poll::Ready(Some(Ok(Frame::data(this.block.slice(phase..phase + len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.sent)
    }
}

/// nginx with the `hugo` server on a Unix socket (DAV enabled) and edge in front of it.
struct Site {
    edge: ProxyProcess,
    addr: std::net::SocketAddr,
    nginx: Nginx,
    _closed: ClosedPort,
    _dir: tempfile::TempDir,
}

fn site() -> Site {
    let dir = tempdir();
    let nginx = Nginx::builder(dir.path())
        .unix(
            "hugo",
            "location /dav/ { dav_methods PUT; create_full_put_path on; }",
        )
        .start();
    let closed = ClosedPort::new();
    let mut edge = ProxyCommand::new(edge_bin(), dir.path())
        .env("EDGE_ADDR", "127.0.0.1:0")
        .env("API_ADDR", closed.addr().to_string())
        .env("HUGO_SOCK", nginx.socket("hugo"))
        .spawn();
    let addr = edge.tcp_listener("edge");
    Site {
        edge,
        addr,
        nginx,
        _closed: closed,
        _dir: dir,
    }
}

#[track_caller]
fn assert_rss_bounded(edge: &ProxyProcess, what: &str) {
    let peak = edge.peak_rss_kib();
    eprintln!("{what}: proxy peak RSS {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "{what}: proxy peak RSS {peak} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    file.read_exact(&mut buf).unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_streams_through_the_unix_cluster() {
    let site = site();
    let mut conn = Conn::tcp(site.addr, Proto::H1)
        .await
        .with_timeout(TRANSFER_DEADLINE);
    let request = conn
        .request(Method::PUT, "upload.test", "/dav/big.bin")
        .header("content-type", "application/octet-stream")
        .body(PatternBody::new(GIB).boxed())
        .unwrap();
    let reply = conn.send(request).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");

    let stored = site.nginx.root().join("dav/big.bin");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), GIB);
    let len = 4096;
    for offset in [
        0,
        1,
        CHUNK as u64 - 1,
        CHUNK as u64,
        7 * CHUNK as u64 + 13,
        GIB / 2 + 12_345,
        GIB - 3 * len as u64 - 1,
        GIB - len as u64,
    ] {
        let expected: Vec<u8> = (offset..offset + len as u64).map(pattern_byte).collect();
        assert!(
            read_at(&stored, offset, len) == expected,
            "stored bytes differ at offset {offset}"
        );
    }
    assert_rss_bounded(&site.edge, "1 GiB upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_download_streams_through_the_unix_cluster() {
    let site = site();
    // Sparse: costs no disk, reads as zeros.
    let file = std::fs::File::create(site.nginx.root().join("big.bin")).unwrap();
    file.set_len(GIB).unwrap();
    drop(file);

    let mut conn = Conn::tcp(site.addr, Proto::H1)
        .await
        .with_timeout(TRANSFER_DEADLINE);
    let request = conn
        .request(Method::GET, "download.test", "/big.bin")
        .body(client::empty())
        .unwrap();
    let response = conn
        .try_send_streaming(request)
        .await
        .unwrap_or_else(|e| panic!("GET /big.bin: {e:?}"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        GIB.to_string().as_str()
    );
    let mut body = response.into_body();
    let received = bounded_by(TRANSFER_DEADLINE, "1 GiB download", async {
        let mut received = 0u64;
        let mut checked = 0usize;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.unwrap_or_else(|e| panic!("body error after {received} bytes: {e:?}"));
            if let Some(data) = frame.data_ref() {
                // Spot-check content in the first frames (checking every byte costs seconds
                // in a debug build).
                if checked < 16 {
                    assert!(
                        data.iter().all(|b| *b == 0),
                        "non-zero byte in a sparse file near offset {received}"
                    );
                    checked += 1;
                }
                received += data.len() as u64;
            }
        }
        received
    })
    .await;
    assert_eq!(received, GIB);
    assert_rss_bounded(&site.edge, "1 GiB download");
}
