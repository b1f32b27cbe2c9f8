//! A cap on request body size.

use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_LENGTH;

use crate::filter::{BodyProgress, Flow, HttpFilter, RequestInfo};
use crate::stats::Counter;

/// Answers `413 Payload Too Large` (body `payload too large`) for request bodies
/// larger than `max_bytes`.
///
/// A declared `content-length` over the limit is refused from the request head, before
/// anything is sent upstream (and before a `100-continue` client sends its body). A body
/// of unknown length (chunked, HTTP/2 without `content-length`) or one that lies about
/// its length is cut off by the chunk that crosses the limit; the upload is abandoned
/// and the client gets the `413` if the upstream has not answered yet.
#[derive(Debug)]
pub struct BodyLimit {
    max_bytes: u64,
    rejected: Counter,
}

impl BodyLimit {
    /// Two limits in one chain would just mean the smaller one.
    pub const UNIQUE: bool = true;

    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            rejected: Counter::default(),
        }
    }

    /// Requests refused so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.get()
    }

    fn too_large(&self) -> Flow {
        self.rejected.inc();
        Flow::respond(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n")
    }
}

impl HttpFilter for BodyLimit {
    type State = ();

    async fn on_request_headers(
        &self,
        _state: &mut (),
        request: &mut http::request::Parts,
        _info: &RequestInfo,
    ) -> Flow {
        // The codec has already rejected malformed or conflicting lengths; a value that
        // still does not parse is left to the streaming check.
        let declared = request
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max_bytes => self.too_large(),
            _ => Flow::Continue,
        }
    }

    fn on_request_body(&self, _chunk: &mut Bytes, progress: BodyProgress) -> Flow {
        if progress.total > self.max_bytes {
            self.too_large()
        } else {
            Flow::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::builtin::test_util::{header, info, now, reply, request};

    #[test]
    fn declared_length_over_the_limit_is_refused_up_front() {
        let f = BodyLimit::new(10);
        let mut parts = request("POST", "/", &[("content-length", "11")]);
        let (resp, body) = reply(now(f.on_request_headers(&mut (), &mut parts, &info())));
        assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body, "payload too large\n");
        assert_eq!(header(&resp.headers, "content-type"), Some("text/plain"));
        assert_eq!(f.rejected(), 1);
    }

    #[test]
    fn declared_length_at_the_limit_passes() {
        let f = BodyLimit::new(10);
        for length in ["10", "0", "not-a-number"] {
            let mut parts = request("POST", "/", &[("content-length", length)]);
            assert!(now(f.on_request_headers(&mut (), &mut parts, &info())).is_continue());
        }
        let mut parts = request("POST", "/", &[]);
        assert!(now(f.on_request_headers(&mut (), &mut parts, &info())).is_continue());
    }

    #[test]
    fn streaming_body_is_cut_at_the_crossing_chunk() {
        let f = BodyLimit::new(10);
        let mut chunk = Bytes::from_static(b"123456");
        let first = BodyProgress {
            before: 0,
            total: 6,
        };
        assert!(f.on_request_body(&mut chunk, first).is_continue());
        let at_limit = BodyProgress {
            before: 6,
            total: 10,
        };
        assert!(f.on_request_body(&mut chunk, at_limit).is_continue());
        let over = BodyProgress {
            before: 10,
            total: 11,
        };
        let (resp, _) = reply(f.on_request_body(&mut chunk, over));
        assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
