//! What a router may look at in a request, whichever form the request is in.
//!
//! Generated routers are generic over [`RouteRequest`], so the same code routes a request
//! already built into `http::request::Parts` and a raw HTTP/1.1 head the native codec has
//! only parsed in place ([`RawRequest`]): the relay path (see `server::h1::relay`) routes
//! before deciding whether it needs a header map at all.

use http::request::Parts;
use http::{HeaderName, Method};

use crate::http::wire::Spans;

/// The parts of a request a route can match on.
pub trait RouteRequest {
    /// The request path, without the query.
    fn path(&self) -> &str;
    fn method(&self) -> &Method;
    /// The host without port, as [`request_host`](super::request_host) gives it.
    fn host(&self) -> &str;
    /// Whether a field `name` (lowercase) is present.
    fn header_present(&self, name: &HeaderName) -> bool;
    /// Whether a field `name` (lowercase) has exactly `value` (byte comparison, as
    /// Envoy's `exact_match`); a repeated field matches if any of its values does.
    fn header_value_is(&self, name: &HeaderName, value: &[u8]) -> bool;
}

impl RouteRequest for Parts {
    #[inline]
    fn path(&self) -> &str {
        self.uri.path()
    }

    #[inline]
    fn method(&self) -> &Method {
        &self.method
    }

    #[inline]
    fn host(&self) -> &str {
        super::request_host(self)
    }

    #[inline]
    fn header_present(&self, name: &HeaderName) -> bool {
        self.headers.contains_key(name)
    }

    #[inline]
    fn header_value_is(&self, name: &HeaderName, value: &[u8]) -> bool {
        self.headers
            .get_all(name)
            .iter()
            .any(|candidate| candidate.as_bytes() == value)
    }
}

/// An HTTP/1.1 request head in origin form, parsed in place and not (yet) built into a
/// header map. Only the native codec makes one, for a head whose target it has checked
/// (see `server::h1::head`).
pub struct RawRequest<'a> {
    pub(crate) method: &'a Method,
    /// The whole target: path and query.
    pub(crate) target: &'a str,
    /// `target` up to its query.
    pub(crate) path: &'a str,
    /// The `Host` field's value, if there is one; read only by routers that match
    /// domains.
    pub(crate) host: Option<&'a [u8]>,
    /// The head's bytes, which `spans` index.
    pub(crate) head: &'a [u8],
    pub(crate) spans: &'a Spans,
}

impl std::fmt::Debug for RawRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRequest")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl RawRequest<'_> {
    /// The values of the fields named `name` (compared ignoring ASCII case).
    fn values<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s [u8]> + 's {
        self.spans
            .fields(self.head)
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name.as_str().as_bytes()))
            .map(|(_, value)| value)
    }
}

impl RouteRequest for RawRequest<'_> {
    #[inline]
    fn path(&self) -> &str {
        self.path
    }

    #[inline]
    fn method(&self) -> &Method {
        self.method
    }

    /// As [`request_host`](super::request_host) gives it: `""` when the value is not
    /// visible ASCII (as `HeaderValue::to_str` refuses it).
    fn host(&self) -> &str {
        let Some(value) = self.host else {
            return "";
        };
        if !value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return "";
        }
        std::str::from_utf8(value).map_or("", super::strip_port)
    }

    fn header_present(&self, name: &HeaderName) -> bool {
        self.values(name).next().is_some()
    }

    fn header_value_is(&self, name: &HeaderName, value: &[u8]) -> bool {
        self.values(name).any(|candidate| candidate == value)
    }
}
