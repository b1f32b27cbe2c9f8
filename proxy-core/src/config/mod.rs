//! Runtime inputs: the few values the DSL leaves to start-up (environment variables),
//! and the address types they resolve to.
//!
//! Everything here runs once, before the first connection is accepted. Each problem is
//! recorded rather than returned early, so a bad deployment learns about every wrong
//! variable in one run instead of one per restart.

mod address;

pub use address::{BindAddress, EndpointAddress, ParseAddressError};

use std::fmt;

/// One problem with a runtime input, phrased for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The environment variable (or literal) the value came from.
    pub source: String,
    /// The value that was found.
    pub value: String,
    /// What was expected instead, e.g. `ip:port, e.g. 0.0.0.0:8080`.
    pub expected: &'static str,
    /// The underlying reason, when there is one beyond "wrong form".
    pub reason: Option<String>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.source, self.value, self.expected
        )?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// Collects runtime inputs at start-up.
///
/// Generated code calls one method per `env(..)` in the topology. On a bad value the
/// method records an [`InputError`] and returns a placeholder; the launcher checks
/// [`Inputs::into_errors`] before anything is bound, so a placeholder is never served.
/// Looks up an environment variable by name.
type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send>;

pub struct Inputs {
    lookup: EnvLookup,
    errors: Vec<InputError>,
    resolved: Vec<(String, String)>,
    /// The host name each endpoint resolved from a name was written with: the default
    /// TLS server name of a cluster's endpoint ([`Inputs::cluster_tls`]).
    endpoint_hosts: Vec<(EndpointAddress, String)>,
}

impl Default for Inputs {
    fn default() -> Self {
        Self::from_process_env()
    }
}

impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inputs")
            .field("errors", &self.errors)
            .field("resolved", &self.resolved)
            .finish_non_exhaustive()
    }
}

impl Inputs {
    /// Reads variables from the process environment.
    pub fn from_process_env() -> Self {
        Self::with_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`; used by tests to avoid mutating the process env.
    pub fn with_lookup(lookup: impl Fn(&str) -> Option<String> + Send + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
            errors: Vec::new(),
            resolved: Vec::new(),
            endpoint_hosts: Vec::new(),
        }
    }

    /// The value of `var`, or `default` when it is unset or empty. Remembers which it used
    /// so `--check` can show where each value came from.
    fn value(&mut self, var: &str, default: &str) -> String {
        match (self.lookup)(var).filter(|v| !v.is_empty()) {
            Some(v) => {
                self.resolved
                    .push((var.to_owned(), format!("{v} (from environment)")));
                v
            }
            None => {
                self.resolved
                    .push((var.to_owned(), format!("{default} (default)")));
                default.to_owned()
            }
        }
    }

    fn record(&mut self, var: &str, value: String, expected: &'static str, reason: Option<String>) {
        self.errors.push(InputError {
            source: var.to_owned(),
            value,
            expected,
            reason,
        });
    }

    /// A listener address from `env(VAR, default)`: `ip:port` or `unix:/abs/path`.
    pub fn bind_env(&mut self, var: &str, default: &str) -> BindAddress {
        let value = self.value(var, default);
        match value.parse::<BindAddress>() {
            Ok(addr) => addr,
            Err(e) => {
                self.record(var, value, BindAddress::EXPECTED, Some(e.to_string()));
                BindAddress::placeholder()
            }
        }
    }

    /// An upstream endpoint from `env(VAR, default)`: `host:port` or `unix:/abs/path`.
    /// A host name is resolved here, once; the first address wins (as Envoy's logical DNS).
    pub fn endpoint_env(&mut self, var: &str, default: &str) -> EndpointAddress {
        let value = self.value(var, default);
        match EndpointAddress::resolve(&value) {
            Ok(addr) => {
                self.remember_host(&value, &addr);
                addr
            }
            Err(e) => {
                self.record(var, value, EndpointAddress::EXPECTED, Some(e.to_string()));
                EndpointAddress::placeholder()
            }
        }
    }

    /// Notes the host of a `host:port` endpoint (not an IP literal or a Unix path).
    fn remember_host(&mut self, written: &str, address: &EndpointAddress) {
        if written.starts_with("unix:") || written.parse::<std::net::SocketAddr>().is_ok() {
            return;
        }
        if let Some((host, _port)) = written.rsplit_once(':') {
            self.endpoint_hosts.push((address.clone(), host.to_owned()));
        }
    }

    /// A Unix socket path from `pipe(env(VAR, default))`: an absolute path.
    pub fn pipe_env(&mut self, var: &str, default: &str) -> std::path::PathBuf {
        let value = self.value(var, default);
        match address::absolute_path(&value) {
            Ok(path) => path,
            Err(e) => {
                self.record(
                    var,
                    value,
                    "an absolute path, e.g. /dev/shm/app.sock",
                    Some(e.to_string()),
                );
                std::path::PathBuf::from("/")
            }
        }
    }

    /// `host:port` from `env(VAR, default)` for a DNS cluster, which resolves the host
    /// itself, periodically. A Unix path or a value without a port is reported.
    pub fn host_port_env(&mut self, var: &str, default: &str) -> (String, u16) {
        let value = self.value(var, default);
        let parsed = value
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty() && !host.starts_with("unix"))
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)));
        match parsed {
            Some((host, port)) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (host.to_owned(), port)
            }
            None => {
                self.record(var, value, "host:port, e.g. api.internal:8080", None);
                (String::new(), 0)
            }
        }
    }

    /// A host-name endpoint written as a literal (`"origin.internal:8080"`), resolved once
    /// at start-up. IP literals never come here: the macro builds them as constants.
    pub fn resolve_host(&mut self, host_port: &str) -> EndpointAddress {
        match EndpointAddress::resolve(host_port) {
            Ok(addr) => {
                self.remember_host(host_port, &addr);
                addr
            }
            Err(e) => {
                self.record(
                    "endpoint",
                    host_port.to_owned(),
                    "a resolvable host:port",
                    Some(e.to_string()),
                );
                EndpointAddress::placeholder()
            }
        }
    }

    /// A route regex. The macro already compiled every pattern at build time, so this can
    /// only fail if the regex crate versions disagree; it is still reported, never panicked on.
    pub fn regex(&mut self, pattern: &str) -> regex::Regex {
        match regex::Regex::new(pattern) {
            Ok(re) => re,
            Err(e) => {
                self.record(
                    "regex",
                    pattern.to_owned(),
                    "a valid regular expression",
                    Some(e.to_string()),
                );
                never_matching_regex()
            }
        }
    }

    /// The `access_log_file(..)` filter: the file is opened (for appending) here, at
    /// start-up; a failure is reported with the path and stops the proxy before it
    /// serves. The returned placeholder (stdout) is never used in that case.
    pub fn access_log_file(
        &mut self,
        path: &'static str,
        format: &'static str,
    ) -> crate::filter::builtin::AccessLog {
        match crate::filter::builtin::AccessLog::file(path, format) {
            Ok(log) => log,
            Err(error) => {
                let reason = Some(error.to_string());
                self.record(
                    "access_log_file",
                    path.to_owned(),
                    "a writable file path",
                    reason,
                );
                crate::filter::builtin::AccessLog::stdout(format)
            }
        }
    }

    /// A file path from `env(VAR, default)` (TLS certificates and keys): any non-empty
    /// path; the file itself is read by the method that uses it.
    pub fn path_env(&mut self, var: &str, default: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(self.value(var, default))
    }

    /// A listener's `tls { .. }`: reads and checks every file now. A problem (a missing
    /// or unreadable file, no certificate or key in it, a key that does not match its
    /// certificate, an expired certificate, ...) is recorded, naming the file, and
    /// `None` returned; the proxy then stops before it serves.
    pub fn server_tls(
        &mut self,
        spec: crate::tls::ServerTlsSpec,
    ) -> Option<std::sync::Arc<crate::tls::ServerTls>> {
        self.tls_input("tls", crate::tls::ServerTls::load(spec))
    }

    /// `listener` with `tls { .. }` loaded from `spec` (see [`Inputs::server_tls`]). On a
    /// recorded problem the listener is returned without TLS; it is never bound, because
    /// the launcher refuses to serve when any input failed.
    pub fn listener_tls(
        &mut self,
        listener: crate::listener::ListenerConfig,
        spec: crate::tls::ServerTlsSpec,
    ) -> crate::listener::ListenerConfig {
        let source = format!("listener `{}` tls", listener.name());
        match self.tls_input(&source, crate::tls::ServerTls::load(spec)) {
            Some(tls) => listener.tls(tls),
            None => listener,
        }
    }

    /// A cluster's `tls { .. }`: reads and checks every file now, recording a problem
    /// (naming the file) and returning `None`.
    pub fn upstream_tls(
        &mut self,
        spec: crate::tls::UpstreamTlsSpec,
    ) -> Option<std::sync::Arc<crate::tls::UpstreamTls>> {
        self.tls_input("tls", crate::tls::UpstreamTls::load(spec))
    }

    /// `cluster` originating TLS with `spec`. Each endpoint's server name is the
    /// spec's `sni`, else the host name the endpoint was written with (when it was
    /// resolved through these inputs), else its IP address. A Unix-socket endpoint
    /// without `sni` has none: that is recorded as a problem.
    pub fn cluster_tls(
        &mut self,
        cluster: crate::cluster::Cluster,
        spec: crate::tls::UpstreamTlsSpec,
    ) -> crate::cluster::Cluster {
        let source = format!("cluster `{}` tls", cluster.name());
        let Some(tls) = self.tls_input(&source, crate::tls::UpstreamTls::load(spec)) else {
            return cluster;
        };
        let hosts = &self.endpoint_hosts;
        let cluster = cluster.tls_with_hosts(tls, |address| {
            hosts
                .iter()
                .find(|(known, _)| known == address)
                .map(|(_, host)| host.as_str())
        });
        let missing: Vec<String> = cluster
            .endpoints()
            .iter()
            .enumerate()
            .filter(|(index, _)| !cluster.has_tls_server_name(*index))
            .map(|(_, endpoint)| endpoint.address().to_string())
            .collect();
        for address in missing {
            self.record(
                &source,
                address,
                "an `sni` for Unix-socket endpoints",
                Some(
                    "a Unix socket has no host name to verify the origin's certificate against"
                        .to_owned(),
                ),
            );
        }
        cluster
    }

    fn tls_input<T>(
        &mut self,
        source: &str,
        loaded: Result<T, crate::tls::TlsError>,
    ) -> Option<std::sync::Arc<T>> {
        match loaded {
            Ok(tls) => Some(std::sync::Arc::new(tls)),
            Err(error) => {
                let value = error
                    .path()
                    .map_or_else(String::new, |path| path.display().to_string());
                self.record(source, value, error.expected(), Some(error.to_string()));
                None
            }
        }
    }

    /// Where each environment-backed value came from, for `--check`.
    pub fn resolved(&self) -> &[(String, String)] {
        &self.resolved
    }

    /// All problems found, if any.
    pub fn errors(&self) -> &[InputError] {
        &self.errors
    }

    /// Consumes the collector, yielding every problem found.
    pub fn into_errors(self) -> Vec<InputError> {
        self.errors
    }
}

fn never_matching_regex() -> regex::Regex {
    // `[^\s\S]` matches no character, so the route it guards never matches.
    regex::Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable_regex())
}

#[allow(clippy::unwrap_used)]
fn unreachable_regex() -> regex::Regex {
    // The pattern above is a constant known to compile; this arm exists only to avoid a
    // panic path in the signature. `a^` also never matches.
    regex::Regex::new("a^").unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_overrides_default_and_bad_values_are_all_reported() {
        let mut inputs = Inputs::with_lookup(|name| match name {
            "GOOD" => Some("127.0.0.1:9000".into()),
            "BAD1" => Some("nonsense".into()),
            "BAD2" => Some("relative/path".into()),
            _ => None,
        });
        assert_eq!(
            inputs.bind_env("GOOD", "0.0.0.0:1").to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(
            inputs.bind_env("UNSET", "0.0.0.0:1").to_string(),
            "0.0.0.0:1"
        );
        inputs.bind_env("BAD1", "0.0.0.0:1");
        inputs.pipe_env("BAD2", "/a.sock");
        let errors = inputs.into_errors();
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0]
                .to_string()
                .starts_with("BAD1=\"nonsense\" is not valid: expected ip:port")
        );
        assert!(errors[1].to_string().contains("BAD2"));
    }

    #[test]
    fn host_names_of_endpoints_are_remembered_for_tls_and_paths_come_from_env() {
        let mut inputs = Inputs::with_lookup(|name| match name {
            "ORIGIN" => Some("localhost:8443".into()),
            "CERT" => Some("/run/secrets/tls.crt".into()),
            _ => None,
        });
        let named = inputs.endpoint_env("ORIGIN", "127.0.0.1:1");
        inputs.endpoint_env("LITERAL", "127.0.0.1:8443");
        inputs.endpoint_env("PIPE", "unix:/run/app.sock");
        assert_eq!(inputs.endpoint_hosts, [(named, "localhost".to_owned())]);
        assert_eq!(
            inputs.path_env("CERT", "/etc/tls/cert.pem"),
            std::path::PathBuf::from("/run/secrets/tls.crt")
        );
        assert_eq!(
            inputs.path_env("KEY", "/etc/tls/key.pem"),
            std::path::PathBuf::from("/etc/tls/key.pem")
        );
        assert!(inputs.errors().is_empty(), "{:?}", inputs.errors());
    }
}
