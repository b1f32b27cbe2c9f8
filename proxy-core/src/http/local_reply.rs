use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::ResponseBody;

/// Header carrying Envoy-style response flags on replies the proxy generates itself, so
/// a client (or a test) can tell a proxy 502 from an origin 502.
pub const RESPONSE_FLAGS_HEADER: HeaderName = HeaderName::from_static(RESPONSE_FLAGS_NAME);
pub(crate) const RESPONSE_FLAGS_NAME: &str = "x-proxy-response-flags";

/// A reply the proxy generates because it could not (or would not) get one upstream.
///
/// | reply | status | flag | body |
/// |---|---|---|---|
/// | `NoRoute` | 404 | `NR` | `no route\n` |
/// | `NoHealthyUpstream` | 503 | `UH` | `no healthy upstream\n` |
/// | `ConnectFailure` | 502 | `UF` | `upstream connect error\n` |
/// | `UpstreamReset` | 502 | `UC` | `upstream reset before response\n` |
/// | `UpstreamTimeout` | 504 | `UT` | `upstream request timeout\n` |
/// | `UpstreamOverflow` | 503 | `UO` | `upstream overflow\n` |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReply {
    NoRoute,
    NoHealthyUpstream,
    ConnectFailure,
    UpstreamReset,
    UpstreamTimeout,
    UpstreamOverflow,
}

impl LocalReply {
    pub const fn status(self) -> StatusCode {
        match self {
            LocalReply::NoRoute => StatusCode::NOT_FOUND,
            LocalReply::NoHealthyUpstream | LocalReply::UpstreamOverflow => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            LocalReply::ConnectFailure | LocalReply::UpstreamReset => StatusCode::BAD_GATEWAY,
            LocalReply::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Envoy's response flag for this outcome.
    pub const fn flag(self) -> &'static str {
        match self {
            LocalReply::NoRoute => "NR",
            LocalReply::NoHealthyUpstream => "UH",
            LocalReply::ConnectFailure => "UF",
            LocalReply::UpstreamReset => "UC",
            LocalReply::UpstreamTimeout => "UT",
            LocalReply::UpstreamOverflow => "UO",
        }
    }

    pub const fn body(self) -> &'static str {
        match self {
            LocalReply::NoRoute => "no route\n",
            LocalReply::NoHealthyUpstream => "no healthy upstream\n",
            LocalReply::ConnectFailure => "upstream connect error\n",
            LocalReply::UpstreamReset => "upstream reset before response\n",
            LocalReply::UpstreamTimeout => "upstream request timeout\n",
            LocalReply::UpstreamOverflow => "upstream overflow\n",
        }
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let mut response = plain_text(self.status(), self.body());
        response
            .headers_mut()
            .insert(RESPONSE_FLAGS_HEADER, HeaderValue::from_static(self.flag()));
        response
    }
}

/// A `text/plain` response with a static body and exact `content-length`.
pub(crate) fn plain_text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if !body.is_empty() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}
