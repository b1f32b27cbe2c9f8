//! A byte-level HTTP/1.1 client, for framing that real clients hide: whether a HEAD, 204
//! or 304 response is followed by stray body bytes, `100 Continue`, exact header lines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::DEADLINE;

/// One HTTP/1.1 connection driven by hand. Reads are bounded by [`DEADLINE`].
#[derive(Debug)]
pub struct RawHttp<S> {
    stream: S,
    buf: Vec<u8>,
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The head exactly as received, up to and including the blank line.
    pub raw: String,
    pub status: u16,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The single value of `name`; panics if absent or repeated.
    pub fn header(&self, name: &str) -> &str {
        let values = self.all(name);
        assert!(
            values.len() == 1,
            "expected one `{name}` header, got {values:?} in\n{}",
            self.raw
        );
        values[0]
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    /// Header names in order, lowercased.
    pub fn names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl RawHttp<TcpStream> {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(DEADLINE))
            .unwrap_or_else(|e| panic!("set_read_timeout: {e}"));
        Self {
            stream,
            buf: Vec::new(),
        }
    }
}

impl RawHttp<UnixStream> {
    pub fn connect_unix(path: &Path) -> Self {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(DEADLINE))
            .unwrap_or_else(|e| panic!("set_read_timeout: {e}"));
        Self {
            stream,
            buf: Vec::new(),
        }
    }
}

impl<S: Read + Write> RawHttp<S> {
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
        self.stream.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    }

    /// Reads more bytes into the buffer; `false` at end of stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) => panic!(
                "read failed (timeout is {DEADLINE:?}): {e}; buffered: {:?}",
                self.text()
            ),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads one response head. Bytes after it stay buffered for [`Self::body`].
    pub fn read_head(&mut self) -> Head {
        let end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            assert!(
                self.fill(),
                "connection closed before a complete response head; got {:?}",
                self.text()
            );
        };
        let raw: Vec<u8> = self.buf.drain(..end).collect();
        let raw =
            String::from_utf8(raw).unwrap_or_else(|e| panic!("response head is not UTF-8: {e}"));
        let mut lines = raw.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "not an HTTP/1.1 status line: {status_line:?}\n{raw}"
        );
        let status = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header line {line:?}"));
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        Head {
            raw,
            status,
            headers,
        }
    }

    /// Reads exactly `len` body bytes.
    pub fn body(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len {
            assert!(
                self.fill(),
                "connection closed after {} of {len} body bytes",
                self.buf.len()
            );
        }
        self.buf.drain(..len).collect()
    }

    /// Reads a body framed by the head's `content-length` (absent means empty).
    pub fn body_for(&mut self, head: &Head) -> Vec<u8> {
        assert!(
            !head.has("transfer-encoding"),
            "expected a content-length body:\n{}",
            head.raw
        );
        let len = if head.has("content-length") {
            head.header("content-length")
                .parse()
                .unwrap_or_else(|e| panic!("content-length: {e}"))
        } else {
            0
        };
        self.body(len)
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Everything until the peer closes the connection.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }
}
