//! The syntax of Envoy-style format strings ("command operators"), shared by header
//! values and access-log lines.
//!
//! | operator | renders | in header values |
//! |---|---|---|
//! | `%REQ(name)%`, `%REQ(name?alt)%`, `%REQ(name):N%` | a request header (the first value if repeated), else `alt`, truncated to `N` bytes; pseudo-headers `:method`, `:path` (with query), `:authority`, `:scheme` | yes |
//! | `%RESP(name)%` (same forms, no pseudo-headers) | a response header | no |
//! | `%START_TIME%` | when the request head arrived, UTC, `2024-05-01T12:00:00.123Z` | yes |
//! | `%PROTOCOL%` | `HTTP/1.1`, `HTTP/2`, ... | yes |
//! | `%DOWNSTREAM_REMOTE_ADDRESS%` | the client's IP (see below) | yes |
//! | `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%` | the client's IP | yes |
//! | `%ROUTE_NAME%` | the route, `listener/virtual_host/index` | yes |
//! | `%RESPONSE_CODE%` | the status sent | no |
//! | `%RESPONSE_FLAGS%` | Envoy response flags (`NR`, `UF`, `RL`, ...) | no |
//! | `%BYTES_RECEIVED%`, `%BYTES_SENT%` | body bytes | no |
//! | `%DURATION%` | milliseconds from the request head to the end of the response | no |
//! | `%UPSTREAM_HOST%` | the endpoint the request went to | no |
//! | `%%` | a literal `%` | yes |
//!
//! Operator names are upper case; header names are case-insensitive. A value that is
//! not available renders as `-` in an access log and as nothing in a header value (as
//! in Envoy; a header whose whole value renders empty is not added). The client's port
//! is not known to filters yet, so `%DOWNSTREAM_REMOTE_ADDRESS%` renders the IP alone.
//!
//! This file depends on nothing but `std`, so the `proxy!` macro can check formats at
//! compile time with the very code that compiles them at start-up.

use std::fmt;

/// One piece of a parsed format string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text copied as is.
    Literal(&'a str),
    /// A command operator.
    Operator(Operator<'a>),
}

/// A command operator (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator<'a> {
    /// `%REQ(header?alternative):max_len%`; names as written (not yet lower-cased).
    Req(HeaderRef<'a>),
    /// `%RESP(header?alternative):max_len%`.
    Resp(HeaderRef<'a>),
    StartTime,
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    RouteName,
}

impl Operator<'_> {
    /// Whether the operator can be rendered from the request alone, which is what a
    /// header value has to work with.
    pub fn available_in_headers(&self) -> bool {
        matches!(
            self,
            Operator::Req(_)
                | Operator::StartTime
                | Operator::Protocol
                | Operator::DownstreamRemoteAddress
                | Operator::DownstreamRemoteAddressWithoutPort
                | Operator::RouteName
        )
    }
}

/// The argument of `%REQ(..)%` and `%RESP(..)%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub name: &'a str,
    pub alternative: Option<&'a str>,
    pub max_len: Option<usize>,
}

/// Why a format string was rejected, with the byte range of the offending operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Byte offset of the `%` that starts the operator.
    pub start: usize,
    /// Byte offset just past the operator, or the end of the string if it never ends.
    pub end: usize,
    pub kind: FormatErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatErrorKind {
    /// `%` not followed by an operator name; `%%` writes a literal `%`.
    MissingName,
    /// The operator does not end with `%`.
    Unterminated,
    /// Not an operator this proxy knows.
    UnknownOperator,
    /// `%REQ%` or `%RESP%` without `(header)`.
    MissingHeader,
    /// An argument or `:N` on an operator that takes none.
    UnexpectedArgument,
    /// A header name with characters outside the HTTP token set, or an unknown
    /// pseudo-header.
    InvalidHeaderName,
    /// `:N` that is not a positive integer.
    InvalidMaxLength,
    /// `%START_TIME(..)%`: custom time formats are not supported.
    CustomTimeFormat,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self.kind {
            FormatErrorKind::MissingName => {
                "`%` must start an operator such as `%START_TIME%`; write `%%` for a literal `%`"
            }
            FormatErrorKind::Unterminated => "operator is not closed with `%`",
            FormatErrorKind::UnknownOperator => "unknown operator",
            FormatErrorKind::MissingHeader => {
                "`REQ` and `RESP` need a header name: `%REQ(user-agent)%`"
            }
            FormatErrorKind::UnexpectedArgument => "this operator takes no argument",
            FormatErrorKind::InvalidHeaderName => "invalid header name",
            FormatErrorKind::InvalidMaxLength => "the length after `:` must be a positive integer",
            FormatErrorKind::CustomTimeFormat => {
                "custom `START_TIME` formats are not supported; use `%START_TIME%`"
            }
        };
        write!(f, "{message} (at byte {})", self.start)
    }
}

impl std::error::Error for FormatError {}

/// Parses `format`, rejecting anything malformed. This is the check the macro runs.
pub fn parse(format: &str) -> Result<Vec<Piece<'_>>, FormatError> {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    scan(format, &mut pieces, Some(&mut errors));
    match errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(pieces),
    }
}

/// Parses `format`, keeping malformed operators as literal text: the fallback for a
/// format that did not go through [`parse`] (built by hand), so a typo shows up in the
/// output instead of failing at run time.
pub fn parse_lenient(format: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    scan(format, &mut pieces, None);
    pieces
}

fn scan<'a>(
    format: &'a str,
    pieces: &mut Vec<Piece<'a>>,
    mut errors: Option<&mut Vec<FormatError>>,
) {
    let bytes = format.as_bytes();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'%') {
            // `%%`: the text so far plus one `%` is literal; skip the second `%`.
            push_literal(pieces, &format[literal_start..=i]);
            i += 2;
            literal_start = i;
            continue;
        }
        match operator(format, i) {
            Ok((op, end)) => {
                push_literal(pieces, &format[literal_start..i]);
                pieces.push(Piece::Operator(op));
                i = end;
                literal_start = end;
            }
            Err(error) => {
                if let Some(errors) = errors.as_deref_mut() {
                    errors.push(error);
                }
                // Keep the `%` as text and look for the next operator right after it,
                // so one stray `%` does not swallow a valid operator that follows.
                i += 1;
            }
        }
    }
    push_literal(pieces, &format[literal_start..]);
}

fn push_literal<'a>(pieces: &mut Vec<Piece<'a>>, text: &'a str) {
    if !text.is_empty() {
        pieces.push(Piece::Literal(text));
    }
}

/// Parses the operator whose `%` is at `start`; returns it and the offset after its
/// closing `%`.
fn operator(format: &str, start: usize) -> Result<(Operator<'_>, usize), FormatError> {
    let bytes = format.as_bytes();
    let error = |end: usize, kind| FormatError { start, end, kind };
    let name_start = start + 1;
    let mut pos = name_start;
    while pos < bytes.len()
        && (bytes[pos].is_ascii_uppercase() || bytes[pos].is_ascii_digit() || bytes[pos] == b'_')
    {
        pos += 1;
    }
    let name = &format[name_start..pos];
    if name.is_empty() {
        return Err(error(pos, FormatErrorKind::MissingName));
    }
    let mut argument = None;
    if bytes.get(pos) == Some(&b'(') {
        let Some(close) = format[pos..].find(')') else {
            return Err(error(bytes.len(), FormatErrorKind::Unterminated));
        };
        argument = Some(&format[pos + 1..pos + close]);
        pos += close + 1;
    }
    let mut max_len = None;
    if bytes.get(pos) == Some(&b':') {
        let digits_start = pos + 1;
        pos = digits_start;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        match format[digits_start..pos].parse::<usize>() {
            Ok(n) if n > 0 => max_len = Some(n),
            _ => return Err(error(pos, FormatErrorKind::InvalidMaxLength)),
        }
    }
    if bytes.get(pos) != Some(&b'%') {
        return Err(error(pos, FormatErrorKind::Unterminated));
    }
    let end = pos + 1;
    let simple = |op: Operator<'static>| {
        if argument.is_some() || max_len.is_some() {
            Err(error(end, FormatErrorKind::UnexpectedArgument))
        } else {
            Ok((op, end))
        }
    };
    match name {
        "REQ" | "RESP" => {
            let Some(argument) = argument else {
                return Err(error(end, FormatErrorKind::MissingHeader));
            };
            let (header, alternative) = match argument.split_once('?') {
                Some((header, alternative)) => (header, Some(alternative)),
                None => (argument, None),
            };
            let request = name == "REQ";
            let valid = |h: &str| valid_header_name(h, request);
            if !valid(header) || !alternative.is_none_or(valid) {
                return Err(error(end, FormatErrorKind::InvalidHeaderName));
            }
            let reference = HeaderRef {
                name: header,
                alternative,
                max_len,
            };
            let op = if request {
                Operator::Req(reference)
            } else {
                Operator::Resp(reference)
            };
            Ok((op, end))
        }
        "START_TIME" if argument.is_some() => Err(error(end, FormatErrorKind::CustomTimeFormat)),
        "START_TIME" => simple(Operator::StartTime),
        "PROTOCOL" => simple(Operator::Protocol),
        "RESPONSE_CODE" => simple(Operator::ResponseCode),
        "RESPONSE_FLAGS" => simple(Operator::ResponseFlags),
        "BYTES_RECEIVED" => simple(Operator::BytesReceived),
        "BYTES_SENT" => simple(Operator::BytesSent),
        "DURATION" => simple(Operator::Duration),
        "UPSTREAM_HOST" => simple(Operator::UpstreamHost),
        "DOWNSTREAM_REMOTE_ADDRESS" => simple(Operator::DownstreamRemoteAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            simple(Operator::DownstreamRemoteAddressWithoutPort)
        }
        "ROUTE_NAME" => simple(Operator::RouteName),
        _ => Err(error(end, FormatErrorKind::UnknownOperator)),
    }
}

/// The pseudo-headers `%REQ(..)%` understands.
pub const REQUEST_PSEUDO_HEADERS: [&str; 4] = [":method", ":path", ":authority", ":scheme"];

fn valid_header_name(name: &str, request: bool) -> bool {
    if name.starts_with(':') {
        return request
            && REQUEST_PSEUDO_HEADERS
                .iter()
                .any(|pseudo| pseudo.eq_ignore_ascii_case(name));
    }
    // RFC 9110 §5.6.2 token characters.
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str) -> HeaderRef<'_> {
        HeaderRef {
            name,
            alternative: None,
            max_len: None,
        }
    }

    #[test]
    fn parses_operators_and_literals() {
        let pieces =
            parse("[%START_TIME%] \"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\" %RESP(server):10% 100%%")
                .unwrap();
        assert_eq!(
            pieces,
            [
                Piece::Literal("["),
                Piece::Operator(Operator::StartTime),
                Piece::Literal("] \""),
                Piece::Operator(Operator::Req(HeaderRef {
                    name: "X-ENVOY-ORIGINAL-PATH",
                    alternative: Some(":PATH"),
                    max_len: None,
                })),
                Piece::Literal("\" "),
                Piece::Operator(Operator::Resp(HeaderRef {
                    max_len: Some(10),
                    ..header("server")
                })),
                Piece::Literal(" 100%"),
            ]
        );
    }

    #[test]
    fn every_operator_name() {
        let names = [
            ("PROTOCOL", Operator::Protocol),
            ("RESPONSE_CODE", Operator::ResponseCode),
            ("RESPONSE_FLAGS", Operator::ResponseFlags),
            ("BYTES_RECEIVED", Operator::BytesReceived),
            ("BYTES_SENT", Operator::BytesSent),
            ("DURATION", Operator::Duration),
            ("UPSTREAM_HOST", Operator::UpstreamHost),
            (
                "DOWNSTREAM_REMOTE_ADDRESS",
                Operator::DownstreamRemoteAddress,
            ),
            (
                "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
                Operator::DownstreamRemoteAddressWithoutPort,
            ),
            ("ROUTE_NAME", Operator::RouteName),
            ("START_TIME", Operator::StartTime),
        ];
        for (name, op) in names {
            let format = format!("%{name}%");
            assert_eq!(parse(&format).unwrap(), [Piece::Operator(op)], "{name}");
        }
    }

    #[test]
    fn rejects_malformed_formats() {
        let cases = [
            ("a % b", FormatErrorKind::MissingName, 2),
            ("%REQ(x)", FormatErrorKind::Unterminated, 0),
            ("%REQ(x", FormatErrorKind::Unterminated, 0),
            ("x %NOPE%", FormatErrorKind::UnknownOperator, 2),
            ("%REQ%", FormatErrorKind::MissingHeader, 0),
            ("%PROTOCOL(x)%", FormatErrorKind::UnexpectedArgument, 0),
            ("%DURATION:5%", FormatErrorKind::UnexpectedArgument, 0),
            ("%REQ(bad header)%", FormatErrorKind::InvalidHeaderName, 0),
            ("%REQ(:nope)%", FormatErrorKind::InvalidHeaderName, 0),
            ("%RESP(:status)%", FormatErrorKind::InvalidHeaderName, 0),
            ("%REQ(a?)%", FormatErrorKind::InvalidHeaderName, 0),
            ("%REQ(a):0%", FormatErrorKind::InvalidMaxLength, 0),
            ("%REQ(a):x%", FormatErrorKind::InvalidMaxLength, 0),
            ("%START_TIME(%s)%", FormatErrorKind::CustomTimeFormat, 0),
            ("%start_time%", FormatErrorKind::MissingName, 0),
        ];
        for (format, kind, start) in cases {
            let error = parse(format).unwrap_err();
            assert_eq!((error.kind, error.start), (kind, start), "{format:?}");
            assert!(error.end >= error.start);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn lenient_parsing_keeps_bad_operators_as_text() {
        assert_eq!(
            parse_lenient("50% %NOPE% %PROTOCOL%"),
            [
                Piece::Literal("50% %NOPE% "),
                Piece::Operator(Operator::Protocol)
            ]
        );
        assert_eq!(parse_lenient("%"), [Piece::Literal("%")]);
    }

    #[test]
    fn header_context() {
        assert!(Operator::Req(header("x")).available_in_headers());
        assert!(Operator::DownstreamRemoteAddressWithoutPort.available_in_headers());
        assert!(!Operator::Resp(header("x")).available_in_headers());
        assert!(!Operator::ResponseCode.available_in_headers());
    }
}
