use std::time::Duration;

use super::{RetryPolicy, Targets};
use crate::cluster::Cluster;

/// The route chosen for one request.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// What to do with the request.
    pub action: RouteAction<'a>,
    /// Which of the listener's filter chains runs (an index the macro assigns; routes
    /// with the same effective filters share one).
    pub chain: u16,
    /// `listener/virtual_host/index`, or `""` when no route matched.
    pub name: &'static str,
}

impl Route<'_> {
    /// No route matched; `chain` is the chain of the virtual host that matched (or the
    /// listener's), whose filters still see the 404.
    pub const fn none(chain: u16) -> Self {
        Self {
            action: RouteAction::NoRoute,
            chain,
            name: "",
        }
    }
}

/// What the router decided for one request.
#[derive(Debug, Clone, Copy)]
pub enum RouteAction<'a> {
    /// Proxy to `cluster` under `policy`.
    Forward(&'a Cluster, &'a RoutePolicy),
    /// Proxy to one of several weighted clusters, and/or mirror to others, under
    /// `policy`.
    Split(&'a Targets, &'a RoutePolicy),
    /// Answer locally with a fixed status and body.
    Direct(&'a DirectResponse),
    /// Answer with a redirect built from the request and the configured parts.
    Redirect(&'a Redirect),
    /// No virtual host or no route matched: 404 with response flag `NR`.
    NoRoute,
}

/// Per-route forwarding settings. `const`-constructible so generated code keeps them in
/// `static`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Route name for logs and `--check`: `listener/virtual_host/index`.
    pub name: &'static str,
    /// How long to wait for the upstream's response headers, from when the request has
    /// been received whole; it bounds all attempts and retry backoffs together. `None`
    /// disables the timeout. On expiry the client gets 504 with flag `UT`.
    pub timeout: Option<Duration>,
    /// HTTP/1.1 upgrades (`websocket`, ...) this route tunnels after a `101`; an upgrade
    /// request for anything else is refused with 403. Lowercase.
    pub upgrades: &'static [&'static str],
    /// Retries of failed attempts; `None`: a request is tried once.
    pub retry: Option<RetryPolicy>,
}

impl RoutePolicy {
    /// Envoy's default route timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

    /// A policy with `timeout`, no upgrades and no retries.
    pub const fn new(name: &'static str, timeout: Option<Duration>) -> Self {
        Self {
            name,
            timeout,
            upgrades: &[],
            retry: None,
        }
    }

    /// Retries failed attempts under `policy` (see [`RetryPolicy`]).
    pub const fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Sets [`Self::upgrades`].
    pub const fn upgrades(mut self, upgrades: &'static [&'static str]) -> Self {
        self.upgrades = upgrades;
        self
    }

    /// Whether `protocol` (an `Upgrade` header value) is one this route tunnels.
    pub fn allows_upgrade(&self, protocol: &[u8]) -> bool {
        self.upgrades
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(protocol))
    }
}

/// A fixed local answer, e.g. `direct_response(200, "ok")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    /// The status sent (100..=599, validated by the macro).
    pub status: u16,
    /// The body sent, as `text/plain`.
    pub body: &'static str,
}

impl DirectResponse {
    /// Answers `status` with `body`.
    pub const fn new(status: u16, body: &'static str) -> Self {
        Self { status, body }
    }
}

/// A redirect. Parts left `None` are taken from the request, as in Envoy's
/// `RedirectAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308 (validated by the macro).
    pub status: u16,
    /// Replaces the scheme (`https`).
    pub scheme: Option<&'static str>,
    /// Replaces the host.
    pub host: Option<&'static str>,
    /// Replaces the port.
    pub port: Option<u16>,
    /// Replaces the whole path.
    pub path: Option<&'static str>,
    /// Replaces the matched route prefix (only for `prefix(..)` routes).
    pub prefix_rewrite: Option<(&'static str, &'static str)>,
    /// Drop the query string.
    pub strip_query: bool,
}

impl Redirect {
    /// A redirect with `status` that keeps every part of the request's URL.
    pub const fn new(status: u16) -> Self {
        Self {
            status,
            scheme: None,
            host: None,
            port: None,
            path: None,
            prefix_rewrite: None,
            strip_query: false,
        }
    }
    /// Sets [`Self::scheme`].
    pub const fn scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = Some(scheme);
        self
    }
    /// Sets [`Self::host`].
    pub const fn host(mut self, host: &'static str) -> Self {
        self.host = Some(host);
        self
    }
    /// Sets [`Self::port`].
    pub const fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Sets [`Self::path`].
    pub const fn path(mut self, path: &'static str) -> Self {
        self.path = Some(path);
        self
    }
    /// `matched` is the route's prefix; `replacement` what replaces it.
    pub const fn prefix_rewrite(
        mut self,
        matched: &'static str,
        replacement: &'static str,
    ) -> Self {
        self.prefix_rewrite = Some((matched, replacement));
        self
    }
    /// Sets [`Self::strip_query`].
    pub const fn strip_query(mut self, strip: bool) -> Self {
        self.strip_query = strip;
        self
    }
}
