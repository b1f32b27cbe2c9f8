//! Request hash keys for the consistent-hash balancers, and the fixed hash both they and
//! the ring/table builders use.

use std::hash::{DefaultHasher, Hasher};
use std::net::IpAddr;

use http::header::COOKIE;
use http::request::Parts;

use super::HashPolicy;

/// A fast, keyless hash: SipHash-1-3 with fixed zero keys. Fixed keys keep the mapping of
/// a key to an endpoint stable for the life of the process (every worker agrees), which
/// is what consistent hashing needs; a client that controls the hashed value can only
/// choose its endpoint, which it can do anyway by trying values.
pub(crate) fn hash_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for part in parts {
        hasher.write(part);
        // Separator so ["ab", "c"] and ["a", "bc"] differ.
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

/// The hash key `policy` derives from a request, or `None` when the request lacks the
/// value (no such header or cookie, a Unix-socket client): the balancer then picks as if
/// no hash were configured, at random, as Envoy does.
pub(crate) fn request_key(
    policy: HashPolicy,
    parts: &Parts,
    client_ip: Option<IpAddr>,
) -> Option<u64> {
    match policy {
        HashPolicy::Header(name) => {
            let mut values = parts.headers.get_all(name).iter().peekable();
            values.peek()?;
            Some(hash_parts(values.map(|value| value.as_bytes())))
        }
        HashPolicy::Cookie(name) => cookie(parts, name).map(|value| hash_parts([value])),
        HashPolicy::SourceIp => client_ip.map(ip_key),
    }
}

/// The hash key of a client address (the `SourceIp` policy; also for TCP proxying).
pub(crate) fn ip_key(ip: IpAddr) -> u64 {
    // An IPv4-mapped IPv6 client is the same client as its IPv4 form.
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash_parts([&v4.octets()[..]]),
        IpAddr::V6(v6) => hash_parts([&v6.octets()[..]]),
    }
}

/// The first value of cookie `name` across all `Cookie` headers (HTTP/2 may split them).
fn cookie<'p>(parts: &'p Parts, name: &'p str) -> Option<&'p [u8]> {
    cookies(parts, name).next()
}

/// Every value of cookie `name`, in order, across all `Cookie` headers. Pairs are split
/// on `;` and trimmed (RFC 6265 §5.4 joins them with `; `); pairs without `=` are
/// skipped. Values are returned as sent, quotes included.
pub(crate) fn cookies<'p>(parts: &'p Parts, name: &'p str) -> impl Iterator<Item = &'p [u8]> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|&byte| byte == b';'))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&byte| byte == b'=')?;
            let (key, value) = (pair.get(..eq)?, pair.get(eq + 1..)?);
            (key.trim_ascii() == name.as_bytes()).then(|| value.trim_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| http::Request::new(()).into_parts().0)
    }

    #[test]
    fn cookie_found_across_headers() {
        let p = parts(&[("cookie", "a=1; b=2"), ("cookie", "sid = xyz ")]);
        assert_eq!(cookie(&p, "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&p, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&p, "c"), None);
        let broken = parts(&[("cookie", "novalue; ;=; sid")]);
        assert_eq!(cookie(&broken, "sid"), None);
    }

    #[test]
    fn header_key_absent_is_none() {
        let p = parts(&[("x-user", "alice")]);
        let key = request_key(HashPolicy::Header("x-user"), &p, None);
        assert_eq!(key, Some(hash_parts([&b"alice"[..]])));
        assert_eq!(request_key(HashPolicy::Header("x-other"), &p, None), None);
        assert_eq!(request_key(HashPolicy::SourceIp, &p, None), None);
    }

    #[test]
    fn mapped_v4_is_v4() {
        let v4 = std::net::Ipv4Addr::new(10, 0, 0, 1);
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        let v4 = IpAddr::V4(v4);
        assert_eq!(ip_key(v4), ip_key(mapped));
    }
}
