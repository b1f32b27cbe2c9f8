//! Session persistence (sticky sessions): a request that names an endpoint it was
//! served by before goes back to it while that endpoint is usable. Envoy's
//! `envoy.http.stateful_session.cookie` and `.header`, as a cluster setting.
//!
//! # How a request is routed
//!
//! [`Cluster::select`](super::Cluster::select) reads the request's token (every value of
//! the cookie `name` across all `Cookie` headers, or the first value of header `name`).
//! The first token that names an endpoint of the cluster's current set which is
//! healthy and not already tried by this request wins, and the response gets no new
//! token. Otherwise (no token, a forged or stale one, or its endpoint unhealthy,
//! ejected, removed by DNS or tried) the balancer picks, and the selection carries the
//! header that names the picked endpoint: `set-cookie: name=token; Path=path;
//! [Max-Age=secs; ]HttpOnly`, or `name: token`.
//!
//! # Tokens
//!
//! A token is 16 lowercase hex digits: the first 64 bits of HMAC-SHA-256 over the
//! cluster's name and the endpoint's address. Unlike Envoy, which puts the address in
//! the cookie (base64), the token reveals nothing about the upstream network by itself.
//! The key is fixed per build (the `PROXY_SESSION_TOKEN_KEY` environment variable at
//! compile time, else a constant): tokens are stable across restarts and across
//! replicas of the same build, so sessions survive a restart or a rolling deploy and
//! any replica behind a load balancer honours them. With the default key, whoever has
//! this source can map a list of candidate addresses to tokens; set the compile-time
//! key to make tokens unguessable. A token is looked up in a table sorted by token, so
//! a forged value costs one binary search and is otherwise ignored.

use std::time::Duration;

use http::header::SET_COOKIE;
use http::{HeaderName, HeaderValue};

use super::balance;
use crate::config::EndpointAddress;

/// How a client names the endpoint it wants to stay on, `const`-constructible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPersistence {
    /// The proxy sets cookie `name` to an opaque token of the chosen endpoint (never its
    /// address) and routes requests carrying it back to that endpoint.
    Cookie {
        name: &'static str,
        path: &'static str,
        /// `Max-Age`; `None` (or zero, as in Envoy) makes a session cookie.
        ttl: Option<Duration>,
    },
    /// As `Cookie`, but the token travels in request and response header `name`.
    Header { name: &'static str },
}

/// The endpoint chosen for one attempt of a request.
#[derive(Debug)]
pub struct Selection<'a> {
    pub endpoint: &'a super::Endpoint,
    /// A header to add to the response so the client sticks to `endpoint`
    /// (`set-cookie`, or the persistence header), when session persistence is on and
    /// the request did not already name this endpoint.
    pub session: Option<(http::HeaderName, http::HeaderValue)>,
}

/// The HMAC key for tokens; see the module docs.
const TOKEN_KEY: &str = match option_env!("PROXY_SESSION_TOKEN_KEY") {
    Some(key) => key,
    None => "proxy-core/session-token/v1",
};

/// Hex digits in a token (64 bits).
const TOKEN_LEN: usize = 16;

/// A cluster's session persistence, validated once at start-up.
pub(crate) struct Sessions {
    cluster: &'static str,
    key: ring::hmac::Key,
    kind: Kind,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("cluster", &self.cluster)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Kind {
    /// `name`, and what follows the token in `set-cookie` (`; Path=/; HttpOnly`).
    Cookie {
        name: &'static str,
        attributes: String,
    },
    Header {
        name: HeaderName,
    },
}

impl Sessions {
    /// The cluster's session persistence, or `None` without one. A setting the runtime
    /// cannot express in a header (the DSL rejects these at compile time) is logged
    /// at `error` and disables persistence rather than failing requests.
    pub(crate) fn new(
        cluster: &'static str,
        persistence: Option<SessionPersistence>,
    ) -> Option<Self> {
        let kind = match persistence? {
            SessionPersistence::Cookie { name, path, ttl } => {
                let valid_name = !name.is_empty() && name.bytes().all(is_cookie_name_byte);
                let valid_path =
                    path.bytes().all(|b| b.is_ascii_graphic() || b == b' ') && !path.contains(';');
                if !valid_name || !valid_path {
                    tracing::error!(
                        cluster,
                        name,
                        path,
                        "invalid session cookie name or path; session persistence disabled"
                    );
                    return None;
                }
                let mut attributes = String::new();
                if !path.is_empty() {
                    attributes.push_str("; Path=");
                    attributes.push_str(path);
                }
                if let Some(ttl) = ttl.filter(|ttl| !ttl.is_zero()) {
                    // Max-Age counts whole seconds; round up so a sub-second TTL still
                    // makes a persistent cookie.
                    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
                    attributes.push_str(&format!("; Max-Age={seconds}"));
                }
                attributes.push_str("; HttpOnly");
                Kind::Cookie { name, attributes }
            }
            SessionPersistence::Header { name } => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => Kind::Header { name },
                Err(_) => {
                    tracing::error!(
                        cluster,
                        name,
                        "invalid session header name; session persistence disabled"
                    );
                    return None;
                }
            },
        };
        Some(Self {
            cluster,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, TOKEN_KEY.as_bytes()),
            kind,
        })
    }

    /// The token of the endpoint at `address`; see the module docs.
    pub(crate) fn token(&self, address: &EndpointAddress) -> u64 {
        let mut context = ring::hmac::Context::with_key(&self.key);
        context.update(self.cluster.as_bytes());
        // Separator: cluster names cannot contain NUL, so (cluster, address) is unique.
        context.update(&[0]);
        context.update(address.to_string().as_bytes());
        let tag = context.sign();
        let mut first = [0u8; 8];
        for (out, byte) in first.iter_mut().zip(tag.as_ref()) {
            *out = *byte;
        }
        u64::from_be_bytes(first)
    }

    /// The response header value that hands out `token`; `None` only if it cannot be
    /// a header value, which validation at construction rules out.
    fn header_value(&self, token: u64) -> Option<HeaderValue> {
        let value = match &self.kind {
            Kind::Cookie { name, attributes } => format!("{name}={token:016x}{attributes}"),
            Kind::Header { .. } => format!("{token:016x}"),
        };
        HeaderValue::from_str(&value).ok()
    }

    /// The response header carrying a token.
    pub(crate) fn header_name(&self) -> &HeaderName {
        match &self.kind {
            Kind::Cookie { .. } => &SET_COOKIE,
            Kind::Header { name } => name,
        }
    }

    /// The well-formed tokens the request carries, in order. Malformed values are
    /// skipped; nothing is allocated.
    pub(crate) fn requested<'p>(
        &'p self,
        parts: &'p http::request::Parts,
    ) -> impl Iterator<Item = u64> + 'p {
        let (cookies, header) = match &self.kind {
            Kind::Cookie { name, .. } => (Some(balance::cookies(parts, name)), None),
            Kind::Header { name } => (None, parts.headers.get(name)),
        };
        cookies
            .into_iter()
            .flatten()
            .chain(header.map(HeaderValue::as_bytes))
            .filter_map(parse_token)
    }

    /// The lookup table of a set of endpoints, `addresses` in index order.
    pub(crate) fn table<'a>(
        &self,
        addresses: impl Iterator<Item = &'a EndpointAddress>,
    ) -> SessionTable {
        let mut by_token = Vec::new();
        let mut headers = Vec::new();
        for (index, address) in addresses.enumerate() {
            let token = self.token(address);
            by_token.push((token, index));
            // A value that cannot be built (never, after validation) leaves an empty
            // header; `SessionTable::header` then hands out nothing for that endpoint.
            headers.push(self.header_value(token));
        }
        by_token.sort_unstable();
        SessionTable {
            by_token: by_token.into_boxed_slice(),
            headers: headers.into_boxed_slice(),
        }
    }
}

/// Tokens of one set of endpoints, and the response header value naming each.
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    /// Sorted by token; the index of the endpoint in its set.
    by_token: Box<[(u64, usize)]>,
    /// By endpoint index. Cloning a `HeaderValue` is a reference-count increment.
    headers: Box<[Option<HeaderValue>]>,
}

impl SessionTable {
    /// The index of the endpoint `token` names, if any.
    pub(crate) fn find(&self, token: u64) -> Option<usize> {
        let at = self.by_token.partition_point(|&(known, _)| known < token);
        self.by_token
            .get(at)
            .filter(|&&(known, _)| known == token)
            .map(|&(_, index)| index)
    }

    /// The response header value naming endpoint `index`.
    pub(crate) fn header(&self, index: usize) -> Option<&HeaderValue> {
        self.headers.get(index).and_then(Option::as_ref)
    }
}

/// A token from a cookie or header value: exactly 16 hex digits, optionally in double
/// quotes (RFC 6265 allows a quoted cookie value).
fn parse_token(value: &[u8]) -> Option<u64> {
    let value = value
        .strip_prefix(b"\"")
        .and_then(|inner| inner.strip_suffix(b"\""))
        .unwrap_or(value);
    if value.len() != TOKEN_LEN {
        return None;
    }
    value.iter().try_fold(0u64, |token, &byte| {
        let digit = char::from(byte).to_digit(16)?;
        Some(token << 4 | u64::from(digit))
    })
}

/// RFC 6265 `cookie-name`: an RFC 7230 token.
fn is_cookie_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> EndpointAddress {
        EndpointAddress::resolve(text).unwrap_or_else(|_| EndpointAddress::placeholder())
    }

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut request = http::Request::new(());
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request.headers_mut().append(name, value);
            }
        }
        request.into_parts().0
    }

    fn cookie(name: &'static str, ttl: Option<Duration>) -> Option<Sessions> {
        Sessions::new(
            "c",
            Some(SessionPersistence::Cookie {
                name,
                path: "/",
                ttl,
            }),
        )
    }

    #[test]
    fn tokens_are_stable_opaque_and_per_cluster() {
        let sessions = cookie("sid", None).map(|s| s.token(&address("10.0.0.1:80")));
        let again = cookie("sid", None).map(|s| s.token(&address("10.0.0.1:80")));
        assert_eq!(sessions, again);
        let other = cookie("sid", None).map(|s| s.token(&address("10.0.0.2:80")));
        assert_ne!(sessions, other);
        let elsewhere = Sessions::new("d", Some(SessionPersistence::Header { name: "x-s" }))
            .map(|s| s.token(&address("10.0.0.1:80")));
        assert_ne!(sessions, elsewhere);
    }

    #[test]
    fn set_cookie_has_path_max_age_and_http_only() {
        let Some(sessions) = cookie("sid", Some(Duration::from_millis(1500))) else {
            panic!("valid settings");
        };
        let table = sessions.table([address("10.0.0.1:80")].iter());
        let token = sessions.token(&address("10.0.0.1:80"));
        let value = table.header(0).map(|v| v.to_str().unwrap_or("").to_owned());
        assert_eq!(
            value.as_deref(),
            Some(&*format!("sid={token:016x}; Path=/; Max-Age=2; HttpOnly"))
        );
        assert_eq!(sessions.header_name(), SET_COOKIE);
        let session = cookie("sid", Some(Duration::ZERO)).map(|s| s.header_value(1));
        assert_eq!(
            session.flatten().as_ref().map(HeaderValue::as_bytes),
            Some(&b"sid=0000000000000001; Path=/; HttpOnly"[..])
        );
    }

    #[test]
    fn requested_tokens_come_from_every_cookie_header() {
        let Some(sessions) = cookie("sid", None) else {
            panic!("valid settings");
        };
        let request = parts(&[
            ("cookie", "a=1; sid=nothex; b=2"),
            ("cookie", "sid=\"00000000000000ff\"; sid=00000000000000AB"),
            ("x-sid", "0000000000000001"),
        ]);
        let tokens: Vec<u64> = sessions.requested(&request).collect();
        assert_eq!(tokens, [0xff, 0xab]);
        let header = Sessions::new("c", Some(SessionPersistence::Header { name: "X-Sid" }));
        let tokens: Vec<u64> = header
            .iter()
            .flat_map(|s| s.requested(&request).collect::<Vec<_>>())
            .collect();
        assert_eq!(tokens, [1]);
    }

    #[test]
    fn invalid_settings_disable_persistence() {
        assert!(cookie("bad name", None).is_none());
        assert!(cookie("", None).is_none());
        let bad_path = SessionPersistence::Cookie {
            name: "sid",
            path: "/a;b",
            ttl: None,
        };
        assert!(Sessions::new("c", Some(bad_path)).is_none());
        let bad_header = SessionPersistence::Header { name: "x y" };
        assert!(Sessions::new("c", Some(bad_header)).is_none());
        assert!(Sessions::new("c", None).is_none());
    }

    #[test]
    fn table_finds_known_tokens_only() {
        let Some(sessions) = cookie("sid", None) else {
            panic!("valid settings");
        };
        let addresses = [address("10.0.0.1:80"), address("10.0.0.2:80")];
        let table = sessions.table(addresses.iter());
        for (index, address) in addresses.iter().enumerate() {
            assert_eq!(table.find(sessions.token(address)), Some(index));
        }
        assert_eq!(table.find(sessions.token(&address("10.0.0.3:80"))), None);
        assert_eq!(
            parse_token(b"0123456789abcdef"),
            Some(0x0123_4567_89ab_cdef)
        );
        assert_eq!(parse_token(b"0123456789abcde"), None);
        assert_eq!(parse_token(b"0123456789abcdeg"), None);
        assert_eq!(parse_token(b"+123456789abcdef"), None);
    }
}
