//! Session persistence (sticky sessions): a request that names an endpoint it was
//! served by before goes back to it while that endpoint is usable.

use std::time::Duration;

/// How a client names the endpoint it wants to stay on, `const`-constructible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPersistence {
    /// The proxy sets cookie `name` to an opaque token of the chosen endpoint (never its
    /// address) and routes requests carrying it back to that endpoint.
    Cookie {
        name: &'static str,
        path: &'static str,
        /// `Max-Age`; `None` makes a session cookie.
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
