//! Writing requests: the head in origin form (RFC 9112 §3) and the body's framing.

use std::io::Write as _;

use http::header;
use http::request::Parts;
use http::{HeaderMap, Method};

use super::Error;
use crate::http::wire::{field, is_forwardable_trailer};

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoder {
    /// No body follows the head.
    Empty,
    /// Exactly this many bytes are left to send.
    Length(u64),
    Chunked,
}

/// Appends the request head to `buf` and says how the body must be framed.
///
/// `body_is_empty`/`body_length` come from the body itself: a `Content-Length` field is
/// kept (the body must then match it), otherwise a body of known length gets one, and a
/// body of unknown length goes chunked. A bodiless request says nothing about framing,
/// except the methods whose requests normally carry content, which get
/// `Content-Length: 0` so an origin never waits for a body (as hyper does).
pub(super) fn head(
    buf: &mut Vec<u8>,
    parts: &Parts,
    body_is_empty: bool,
    body_length: Option<u64>,
) -> Encoder {
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |target| target.as_str());
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = &parts.headers;
    // A target with an authority (HTTP/2's `:authority`, an absolute-form target) names
    // the host, whatever a `Host` field says (RFC 9112 §3.2.2, RFC 9113 §8.3.1).
    let authority = parts.uri.authority();
    if let Some(authority) = authority {
        field(buf, b"host", authority.as_str().as_bytes());
    }
    for (name, value) in headers {
        if authority.is_some() && name == header::HOST {
            continue;
        }
        field(buf, name.as_str().as_bytes(), value.as_bytes());
    }
    let encoder = match content_length(headers) {
        Some(0) => Encoder::Empty,
        Some(length) => Encoder::Length(length),
        None if body_is_empty => {
            if carries_content(&parts.method) {
                field(buf, b"content-length", b"0");
            }
            Encoder::Empty
        }
        None => match body_length {
            Some(length) => {
                // Writing to a Vec cannot fail.
                let _ = write!(buf, "content-length: {length}\r\n");
                if length == 0 {
                    Encoder::Empty
                } else {
                    Encoder::Length(length)
                }
            }
            None => {
                field(buf, b"transfer-encoding", b"chunked");
                Encoder::Chunked
            }
        },
    };
    buf.extend_from_slice(b"\r\n");
    encoder
}

/// The request's own `Content-Length`, already validated by the downstream codec.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn carries_content(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

impl Encoder {
    /// Appends `data`'s framing and bytes to `buf`, checking it against a declared
    /// length.
    pub(super) fn data(&mut self, buf: &mut Vec<u8>, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        match self {
            Encoder::Empty => return Err(Error::RequestBodyLength),
            Encoder::Length(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(Error::RequestBodyLength)?;
                buf.extend_from_slice(data);
            }
            Encoder::Chunked => {
                let _ = write!(buf, "{:x}\r\n", data.len());
                buf.extend_from_slice(data);
                buf.extend_from_slice(b"\r\n");
            }
        }
        Ok(())
    }

    /// Appends the end of the body (and any trailers) to `buf`. A length-delimited body
    /// that fell short is an error: the origin would wait for the rest.
    pub(super) fn end(&self, buf: &mut Vec<u8>, trailers: Option<&HeaderMap>) -> Result<(), Error> {
        match self {
            Encoder::Empty | Encoder::Length(0) => Ok(()),
            Encoder::Length(_) => Err(Error::RequestBodyLength),
            Encoder::Chunked => {
                buf.extend_from_slice(b"0\r\n");
                let trailers = trailers.into_iter().flatten();
                for (name, value) in trailers.filter(|(name, _)| is_forwardable_trailer(name)) {
                    field(buf, name.as_str().as_bytes(), value.as_bytes());
                }
                buf.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(request: http::Request<()>, empty: bool, length: Option<u64>) -> (String, Encoder) {
        let (parts, ()) = request.into_parts();
        let mut buf = Vec::new();
        let encoder = head(&mut buf, &parts, empty, length);
        (String::from_utf8(buf).unwrap(), encoder)
    }

    #[test]
    fn bodiless_requests_say_nothing_about_framing_unless_they_usually_carry_content() {
        let get = http::Request::get("/a?b=1")
            .header("host", "o")
            .body(())
            .unwrap();
        assert_eq!(
            encode(get, true, Some(0)),
            (
                "GET /a?b=1 HTTP/1.1\r\nhost: o\r\n\r\n".to_owned(),
                Encoder::Empty
            )
        );
        let post = http::Request::post("/")
            .header("host", "o")
            .body(())
            .unwrap();
        let (text, encoder) = encode(post, true, Some(0));
        assert!(text.ends_with("content-length: 0\r\n\r\n"), "{text}");
        assert_eq!(encoder, Encoder::Empty);
    }

    #[test]
    fn bodies_keep_their_length_or_go_chunked() {
        let declared = http::Request::post("/")
            .header("content-length", "11")
            .body(())
            .unwrap();
        assert_eq!(encode(declared, false, None).1, Encoder::Length(11));
        let known = http::Request::post("/").body(()).unwrap();
        let (text, encoder) = encode(known, false, Some(7));
        assert!(text.contains("content-length: 7\r\n"));
        assert_eq!(encoder, Encoder::Length(7));
        let unknown = http::Request::post("/").body(()).unwrap();
        let (text, encoder) = encode(unknown, false, None);
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert_eq!(encoder, Encoder::Chunked);
    }

    #[test]
    fn host_comes_from_the_authority_when_missing() {
        let request = http::Request::get("http://origin:8080/x").body(()).unwrap();
        assert_eq!(
            encode(request, true, Some(0)).0,
            "GET /x HTTP/1.1\r\nhost: origin:8080\r\n\r\n"
        );
    }

    #[test]
    fn the_authority_replaces_a_host_field() {
        let request = http::Request::get("http://target.example:81/a?b=1")
            .header("host", "other.example")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        assert_eq!(
            encode(request, true, Some(0)).0,
            "GET /a?b=1 HTTP/1.1\r\nhost: target.example:81\r\naccept: */*\r\n\r\n"
        );
    }

    #[test]
    fn chunked_data_and_trailers() {
        let mut encoder = Encoder::Chunked;
        let mut buf = Vec::new();
        encoder.data(&mut buf, b"hello").unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "1".parse().unwrap());
        encoder.end(&mut buf, Some(&trailers)).unwrap();
        assert_eq!(buf, b"5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n");
    }

    #[test]
    fn trailers_that_frame_the_message_are_not_sent() {
        let mut buf = Vec::new();
        let mut trailers = HeaderMap::new();
        trailers.insert("content-length", "99".parse().unwrap());
        trailers.insert("transfer-encoding", "chunked".parse().unwrap());
        trailers.insert("host", "elsewhere".parse().unwrap());
        trailers.insert("x-sum", "1".parse().unwrap());
        Encoder::Chunked.end(&mut buf, Some(&trailers)).unwrap();
        assert_eq!(buf, b"0\r\nx-sum: 1\r\n\r\n");
    }

    #[test]
    fn declared_lengths_are_enforced() {
        let mut encoder = Encoder::Length(3);
        let mut buf = Vec::new();
        assert!(encoder.data(&mut buf, b"abcd").is_err());
        let mut encoder = Encoder::Length(3);
        encoder.data(&mut buf, b"ab").unwrap();
        assert!(encoder.end(&mut buf, None).is_err());
    }
}
