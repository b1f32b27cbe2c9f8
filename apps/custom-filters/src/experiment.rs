//! A header-based A/B tagger.

use std::hash::{Hash, Hasher};

use proxy_core::filter::{Flow, HttpFilter, RequestInfo};
use proxy_core::http::header::{HeaderName, HeaderValue};
use proxy_core::http::{request, response};

/// Puts each request in bucket `a` or `b`: `percent_b` percent of users go to `b`. A
/// request with `x-user-id` is bucketed by a hash of it (stable per user); one without
/// by a hash of its `x-request-id` (random per request: the proxy generates the id
/// before filters run). The bucket is sent upstream and back to the client in `header`.
pub struct AbTagger {
    header: HeaderName,
    percent_b: u64,
}

impl AbTagger {
    pub fn new(header: &'static str, percent_b: u64) -> Self {
        Self {
            header: HeaderName::from_static(header),
            percent_b: percent_b.min(100),
        }
    }

    fn bucket(&self, request: &request::Parts) -> &'static str {
        let key = request
            .headers
            .get("x-user-id")
            .or_else(|| request.headers.get("x-request-id"));
        // A fixed-key hasher, so a user lands in the same bucket on every worker and
        // after every restart.
        let mut hasher = std::hash::DefaultHasher::new();
        key.map(HeaderValue::as_bytes).hash(&mut hasher);
        let roll = hasher.finish() % 100;
        if roll < self.percent_b { "b" } else { "a" }
    }
}

impl HttpFilter for AbTagger {
    /// The bucket chosen for this request, for the response hook.
    type State = Option<&'static str>;

    async fn on_request_headers(
        &self,
        state: &mut Self::State,
        request: &mut request::Parts,
        _: &RequestInfo,
    ) -> Flow {
        let bucket = self.bucket(request);
        request
            .headers
            .insert(self.header.clone(), HeaderValue::from_static(bucket));
        *state = Some(bucket);
        Flow::Continue
    }

    async fn on_response_headers(
        &self,
        state: &mut Self::State,
        response: &mut response::Parts,
        _: &RequestInfo,
    ) -> Flow {
        if let Some(bucket) = *state {
            response
                .headers
                .insert(self.header.clone(), HeaderValue::from_static(bucket));
        }
        Flow::Continue
    }
}
