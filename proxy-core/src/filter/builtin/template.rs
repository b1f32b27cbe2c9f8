//! Compiled format strings: parsed once at construction into literal and variable
//! segments, rendered per request by walking the segments.

use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::HOST;
use http::request::Parts;
use http::{HeaderName, Version};

use super::format::{self, HeaderRef, Operator, Piece};
use crate::filter::{RequestInfo, Summary};

/// A request pseudo-header `%REQ(..)%` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pseudo {
    Method,
    Path,
    Authority,
    Scheme,
}

/// Where a `%REQ%`/`%RESP%` value comes from.
#[derive(Debug, Clone, Copy)]
enum Field {
    Pseudo(Pseudo),
    /// Index into the template's request or response header list: a snapshot taken
    /// for a later render (the access log) stores values in the same order.
    Header(usize),
    /// A name `http` rejected; only reachable for a format that skipped validation.
    Unavailable,
}

#[derive(Debug, Clone, Copy)]
struct Lookup {
    primary: Field,
    alternative: Option<Field>,
    max_len: Option<usize>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(&'static str),
    Req(Lookup),
    Resp(Lookup),
    StartTime,
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%` and `..._WITHOUT_PORT`: filters know the client's
    /// IP but not its port, so both render the IP.
    ClientIp,
    RouteName,
}

/// Which request facts a template reads, so a snapshot captures only those.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Uses {
    pub(crate) method: bool,
    pub(crate) path: bool,
    pub(crate) authority: bool,
    pub(crate) scheme: bool,
}

/// A compiled format string.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    segments: Box<[Segment]>,
    request_headers: Box<[HeaderName]>,
    response_headers: Box<[HeaderName]>,
    uses: Uses,
}

/// What a template renders from. Header hooks render straight from the request head;
/// the access log renders later from a snapshot.
pub(crate) trait Source {
    fn info(&self) -> &RequestInfo;
    fn pseudo(&self, pseudo: Pseudo) -> Option<&[u8]>;
    /// `slot` indexes [`Template::request_headers`]; `name` is the same header.
    fn request_header(&self, slot: usize, name: &HeaderName) -> Option<&[u8]>;
    fn response_header(&self, slot: usize, name: &HeaderName) -> Option<&[u8]> {
        let _ = (slot, name);
        None
    }
    fn protocol(&self) -> Option<Version>;
    fn summary(&self) -> Option<&Summary> {
        None
    }
}

impl Template {
    /// Compiles `format`. Malformed operators stay literal text (see
    /// [`format::parse_lenient`]); the macro has rejected them already.
    pub(crate) fn compile(format: &'static str) -> Self {
        let mut request_headers: Vec<HeaderName> = Vec::new();
        let mut response_headers: Vec<HeaderName> = Vec::new();
        let mut uses = Uses::default();
        let segments = format::parse_lenient(format)
            .into_iter()
            .map(|piece| match piece {
                Piece::Literal(text) => Segment::Literal(text),
                Piece::Operator(op) => match op {
                    Operator::Req(r) => {
                        Segment::Req(lookup(r, &mut request_headers, Some(&mut uses)))
                    }
                    Operator::Resp(r) => Segment::Resp(lookup(r, &mut response_headers, None)),
                    Operator::StartTime => Segment::StartTime,
                    Operator::Protocol => Segment::Protocol,
                    Operator::ResponseCode => Segment::ResponseCode,
                    Operator::ResponseFlags => Segment::ResponseFlags,
                    Operator::BytesReceived => Segment::BytesReceived,
                    Operator::BytesSent => Segment::BytesSent,
                    Operator::Duration => Segment::Duration,
                    Operator::UpstreamHost => Segment::UpstreamHost,
                    Operator::DownstreamRemoteAddress
                    | Operator::DownstreamRemoteAddressWithoutPort => Segment::ClientIp,
                    Operator::RouteName => Segment::RouteName,
                },
            })
            .collect();
        Self {
            segments,
            request_headers: request_headers.into(),
            response_headers: response_headers.into(),
            uses,
        }
    }

    /// The format is plain text: rendering it would always give the same bytes.
    pub(crate) fn as_literal(&self) -> Option<&'static str> {
        match &*self.segments {
            [] => Some(""),
            [Segment::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// Request headers `%REQ(..)%` reads, in slot order.
    pub(crate) fn request_headers(&self) -> &[HeaderName] {
        &self.request_headers
    }

    /// Response headers `%RESP(..)%` reads, in slot order.
    pub(crate) fn response_headers(&self) -> &[HeaderName] {
        &self.response_headers
    }

    pub(crate) fn uses(&self) -> Uses {
        self.uses
    }

    /// Appends the rendered text to `out`; an unavailable value renders as `missing`.
    pub(crate) fn render(&self, source: &impl Source, missing: &[u8], out: &mut Vec<u8>) {
        let info = source.info();
        for segment in &*self.segments {
            // `write!` into a Vec cannot fail; the results are ignored for that reason.
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Segment::Req(l) => {
                    let value = self.resolve(l, |f| match f {
                        Field::Pseudo(p) => source.pseudo(p),
                        Field::Header(slot) => self
                            .request_headers
                            .get(slot)
                            .and_then(|name| source.request_header(slot, name)),
                        Field::Unavailable => None,
                    });
                    push_value(out, value, l.max_len, missing);
                }
                Segment::Resp(l) => {
                    let value = self.resolve(l, |f| match f {
                        Field::Header(slot) => self
                            .response_headers
                            .get(slot)
                            .and_then(|name| source.response_header(slot, name)),
                        Field::Pseudo(_) | Field::Unavailable => None,
                    });
                    push_value(out, value, l.max_len, missing);
                }
                Segment::StartTime => write_utc(out, wall_clock(info.start)),
                Segment::Protocol => match source.protocol().and_then(protocol_name) {
                    Some(name) => out.extend_from_slice(name.as_bytes()),
                    None => out.extend_from_slice(missing),
                },
                Segment::ClientIp => match info.client_ip {
                    Some(ip) => {
                        let _ = write!(out, "{ip}");
                    }
                    None => out.extend_from_slice(missing),
                },
                Segment::RouteName if info.route.is_empty() => out.extend_from_slice(missing),
                Segment::RouteName => out.extend_from_slice(info.route.as_bytes()),
                Segment::ResponseCode
                | Segment::ResponseFlags
                | Segment::BytesReceived
                | Segment::BytesSent
                | Segment::Duration
                | Segment::UpstreamHost => match source.summary() {
                    Some(summary) => render_summary(segment, summary, missing, out),
                    None => out.extend_from_slice(missing),
                },
            }
        }
    }

    fn resolve<'s>(
        &self,
        lookup: &Lookup,
        get: impl Fn(Field) -> Option<&'s [u8]>,
    ) -> Option<&'s [u8]> {
        get(lookup.primary).or_else(|| lookup.alternative.and_then(&get))
    }
}

fn lookup(
    reference: HeaderRef<'_>,
    slots: &mut Vec<HeaderName>,
    mut uses: Option<&mut Uses>,
) -> Lookup {
    let mut field = |name: &str| -> Field {
        if name.starts_with(':') {
            let pseudo = match name.to_ascii_lowercase().as_str() {
                ":method" => Pseudo::Method,
                ":path" => Pseudo::Path,
                ":authority" => Pseudo::Authority,
                ":scheme" => Pseudo::Scheme,
                _ => return Field::Unavailable,
            };
            // `RESP` has no pseudo-headers; the parser only admits them in `REQ`.
            let Some(uses) = uses.as_deref_mut() else {
                return Field::Unavailable;
            };
            match pseudo {
                Pseudo::Method => uses.method = true,
                Pseudo::Path => uses.path = true,
                Pseudo::Authority => uses.authority = true,
                Pseudo::Scheme => uses.scheme = true,
            }
            return Field::Pseudo(pseudo);
        }
        // `from_bytes` lower-cases, so `%REQ(User-Agent)%` finds `user-agent`.
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => match slots.iter().position(|existing| *existing == name) {
                Some(slot) => Field::Header(slot),
                None => {
                    slots.push(name);
                    Field::Header(slots.len() - 1)
                }
            },
            Err(_) => Field::Unavailable,
        }
    };
    Lookup {
        primary: field(reference.name),
        alternative: reference.alternative.map(&mut field),
        max_len: reference.max_len,
    }
}

fn push_value(out: &mut Vec<u8>, value: Option<&[u8]>, max_len: Option<usize>, missing: &[u8]) {
    match value {
        Some(value) if !value.is_empty() => {
            let len = max_len.map_or(value.len(), |max| max.min(value.len()));
            out.extend_from_slice(&value[..len]);
        }
        _ => out.extend_from_slice(missing),
    }
}

fn render_summary(segment: &Segment, summary: &Summary, missing: &[u8], out: &mut Vec<u8>) {
    let _ = match segment {
        Segment::ResponseCode => write!(out, "{}", summary.status.as_u16()),
        Segment::ResponseFlags if summary.response_flags.is_empty() => out.write_all(missing),
        Segment::ResponseFlags => out.write_all(summary.response_flags.as_bytes()),
        Segment::BytesReceived => write!(out, "{}", summary.bytes_received),
        Segment::BytesSent => write!(out, "{}", summary.bytes_sent),
        Segment::Duration => write!(out, "{}", summary.duration.as_millis()),
        Segment::UpstreamHost => match &summary.upstream {
            Some(host) => out.write_all(host.as_bytes()),
            None => out.write_all(missing),
        },
        _ => Ok(()),
    };
}

/// Envoy's spelling of the protocol.
pub(crate) fn protocol_name(version: Version) -> Option<&'static str> {
    Some(match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => return None,
    })
}

/// The wall-clock time of `start`. Requests carry a monotonic `Instant`; the offset
/// from now is exact to within the time since `start`, and a clock step in between
/// moves the result with it (as a wall clock should).
pub(crate) fn wall_clock(start: Instant) -> SystemTime {
    let now = SystemTime::now();
    now.checked_sub(start.elapsed()).unwrap_or(now)
}

/// Writes `time` as Envoy's default `%START_TIME%`: `2024-05-01T12:00:00.123Z`.
pub(crate) fn write_utc(out: &mut Vec<u8>, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        since_epoch.subsec_millis()
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The request head as a [`Source`], for hooks that render while they hold it.
pub(crate) struct RequestSource<'a> {
    pub(crate) parts: &'a Parts,
    pub(crate) info: &'a RequestInfo,
}

impl Source for RequestSource<'_> {
    fn info(&self) -> &RequestInfo {
        self.info
    }

    fn pseudo(&self, pseudo: Pseudo) -> Option<&[u8]> {
        request_pseudo(self.parts, pseudo)
    }

    fn request_header(&self, _slot: usize, name: &HeaderName) -> Option<&[u8]> {
        self.parts.headers.get(name).map(|v| v.as_bytes())
    }

    fn protocol(&self) -> Option<Version> {
        Some(self.parts.version)
    }
}

/// Only [`RequestInfo`]: for a response hook whose request hook never ran (an earlier
/// filter answered), so request values are unavailable.
pub(crate) struct InfoSource<'a>(pub(crate) &'a RequestInfo);

impl Source for InfoSource<'_> {
    fn info(&self) -> &RequestInfo {
        self.0
    }

    fn pseudo(&self, _pseudo: Pseudo) -> Option<&[u8]> {
        None
    }

    fn request_header(&self, _slot: usize, _name: &HeaderName) -> Option<&[u8]> {
        None
    }

    fn protocol(&self) -> Option<Version> {
        None
    }
}

/// A pseudo-header's value in a request head. `:authority` is the target's authority
/// (absolute-form, HTTP/2) or else `Host`, the same precedence routing uses.
pub(crate) fn request_pseudo(parts: &Parts, pseudo: Pseudo) -> Option<&[u8]> {
    match pseudo {
        Pseudo::Method => Some(parts.method.as_str().as_bytes()),
        Pseudo::Path => parts.uri.path_and_query().map(|pq| pq.as_str().as_bytes()),
        Pseudo::Authority => parts
            .uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| parts.headers.get(HOST).map(|v| v.as_bytes())),
        Pseudo::Scheme => parts.uri.scheme_str().map(str::as_bytes),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::filter::builtin::test_util::{info, request};

    fn render_request(format: &'static str, parts: &Parts, info: &RequestInfo) -> String {
        let template = Template::compile(format);
        let mut out = Vec::new();
        template.render(&RequestSource { parts, info }, b"-", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_request_operators() {
        let parts = request(
            "POST",
            "/a/b?x=1",
            &[
                ("host", "example.org"),
                ("user-agent", "curl/8"),
                ("x-forwarded-for", "10.0.0.1"),
            ],
        );
        let mut info = info();
        info.client_ip = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        info.route = "edge/any/0";
        assert_eq!(
            render_request(
                "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %REQ(USER-AGENT)% %REQ(X-Forwarded-For)% \
                 %REQ(:AUTHORITY)% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %ROUTE_NAME% 100%%",
                &parts,
                &info,
            ),
            "POST /a/b?x=1 HTTP/1.1 curl/8 10.0.0.1 example.org 192.0.2.7 edge/any/0 100%"
        );
    }

    #[test]
    fn missing_values_alternatives_and_truncation() {
        let parts = request("GET", "/p", &[("x-b", "bravo")]);
        let info = info();
        assert_eq!(
            render_request(
                "%REQ(x-a)%|%REQ(x-a?x-b)%|%REQ(x-b):3%|%ROUTE_NAME%|%RESPONSE_CODE%",
                &parts,
                &info
            ),
            "-|bravo|bra|-|-"
        );
        // The client IP is unknown for Unix-socket clients.
        assert_eq!(
            render_request("%DOWNSTREAM_REMOTE_ADDRESS%", &parts, &info),
            "-"
        );
    }

    #[test]
    fn malformed_operators_stay_literal() {
        let parts = request("GET", "/p", &[]);
        let info = info();
        assert_eq!(
            render_request("50% off %NOPE% %REQ(:METHOD)%", &parts, &info),
            "50% off %NOPE% GET"
        );
    }

    #[test]
    fn literal_templates_are_recognised() {
        assert_eq!(Template::compile("plain").as_literal(), Some("plain"));
        assert_eq!(Template::compile("").as_literal(), Some(""));
        assert_eq!(Template::compile("a %REQ(x)%").as_literal(), None);
    }

    #[test]
    fn slots_are_deduplicated() {
        let t = Template::compile("%REQ(A)% %REQ(a?b)% %RESP(c)% %RESP(C)%");
        assert_eq!(t.request_headers(), ["a", "b"]);
        assert_eq!(t.response_headers(), ["c"]);
    }

    #[test]
    fn summary_operators() {
        struct WithSummary<'a>(&'a RequestInfo, Summary);
        impl Source for WithSummary<'_> {
            fn info(&self) -> &RequestInfo {
                self.0
            }
            fn pseudo(&self, _: Pseudo) -> Option<&[u8]> {
                None
            }
            fn request_header(&self, _: usize, _: &HeaderName) -> Option<&[u8]> {
                None
            }
            fn protocol(&self) -> Option<Version> {
                Some(Version::HTTP_2)
            }
            fn summary(&self) -> Option<&Summary> {
                Some(&self.1)
            }
        }
        let info = info();
        let summary = Summary {
            status: StatusCode::TOO_MANY_REQUESTS,
            response_flags: "RL",
            bytes_received: 12,
            bytes_sent: 34,
            duration: Duration::from_micros(56_789),
            upstream: Some("127.0.0.1:8081".into()),
            completed: true,
        };
        let t = Template::compile(
            "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %UPSTREAM_HOST% %PROTOCOL%",
        );
        let mut out = Vec::new();
        t.render(&WithSummary(&info, summary.clone()), b"-", &mut out);
        assert_eq!(out, b"429 RL 12 34 56 127.0.0.1:8081 HTTP/2");

        let empty = Summary {
            response_flags: "",
            upstream: None,
            ..summary
        };
        out.clear();
        Template::compile("%RESPONSE_FLAGS% %UPSTREAM_HOST%").render(
            &WithSummary(&info, empty),
            b"-",
            &mut out,
        );
        assert_eq!(out, b"- -");
    }

    #[test]
    fn utc_formatting() {
        let mut out = Vec::new();
        write_utc(&mut out, UNIX_EPOCH);
        assert_eq!(out, b"1970-01-01T00:00:00.000Z");
        out.clear();
        // 2024-02-29T23:59:59.123Z, a leap day.
        write_utc(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_709_251_199_123),
        );
        assert_eq!(out, b"2024-02-29T23:59:59.123Z");
        out.clear();
        write_utc(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(out, b"2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn start_time_is_the_request_time() {
        let parts = request("GET", "/", &[]);
        let mut info = info();
        let mut before = Vec::new();
        // A millisecond of slack for the Instant-to-wall-clock conversion.
        write_utc(&mut before, SystemTime::now() - Duration::from_millis(1));
        info.start = Instant::now();
        let rendered = render_request("%START_TIME%", &parts, &info);
        let mut after = Vec::new();
        write_utc(&mut after, SystemTime::now());
        // The format sorts lexicographically, so bounds checks are string comparisons.
        assert!(before.as_slice() <= rendered.as_bytes(), "{rendered}");
        assert!(rendered.as_bytes() <= after.as_slice(), "{rendered}");
    }
}
