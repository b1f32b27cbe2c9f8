//! TLS ("transport sockets" in Envoy's words): terminating TLS on listeners and
//! originating it to clusters, with rustls and its `ring` provider.
//!
//! # When things run
//!
//! - **Start-up.** [`ServerTls::load`] and [`UpstreamTls::load`] read every PEM file,
//!   check that keys match certificates and that no served certificate has expired, and
//!   build the rustls configurations. Generated code goes through
//!   [`Inputs::listener_tls`](crate::config::Inputs::listener_tls) and
//!   [`Inputs::cluster_tls`](crate::config::Inputs::cluster_tls), which record a failure
//!   (naming the file and the problem) so the proxy refuses to start.
//! - **Per downstream connection.** After `accept`, inside the connection's own task (the
//!   accept loop never waits on a handshake), the listener's current configuration is
//!   taken (one read lock and an `Arc` clone) and the handshake runs with a timeout.
//!   Its outcome is counted in [`TlsStats`]; a completed one
//!   yields a [`TlsSession`] (SNI, ALPN, version, the verified [`ClientIdentity`]) that
//!   every request on the connection shares. ALPN offers `h2` and `http/1.1`; hyper's
//!   auto builder then serves whichever the client speaks.
//! - **Per upstream connection.** When a cluster dials an endpoint, the TLS handshake
//!   runs inside the same connect timeout as the TCP or Unix-socket connect. Pooled
//!   connections are reused without another handshake.
//! - **Per request.** Nothing: requests see the connection's `Arc<TlsSession>`.
//! - **In the background.** [`ServerTls::watch`] polls the files' metadata every
//!   `reload_interval` and, when one changed, rebuilds the configuration off the runtime
//!   threads and swaps it in. New handshakes use the new certificates; established
//!   connections keep theirs. A bad new file is logged and the old configuration stays.

mod identity;
mod pem;
mod server;
mod upstream;
mod x509;

pub use identity::{ClientIdentity, TlsSession};
pub use server::{CertificateSpec, ClientAuth, ServerTls, ServerTlsSpec};
pub use upstream::{TrustRoots, UpstreamTls, UpstreamTlsSpec};

pub(crate) use upstream::ClusterTls;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::stats::TlsStats;

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// What [`FromStr`] accepts, for error messages.
    pub const EXPECTED: &'static str = "1.2 or 1.3";

    /// The versions rustls may negotiate when this is the minimum, newest first.
    fn and_newer(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS12_AND_NEWER: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &TLS12_AND_NEWER,
            TlsVersion::Tls13 => &TLS13_ONLY,
        }
    }

    fn from_rustls(version: rustls::ProtocolVersion) -> Option<Self> {
        match version {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// The version a string names: `1.2`, `1.3`, or `TLSv1.2` / `TLSv1.3`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLS version {0:?}: expected 1.2 or 1.3")]
pub struct ParseTlsVersionError(String);

impl FromStr for TlsVersion {
    type Err = ParseTlsVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("TLSv").unwrap_or(s) {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            _ => Err(ParseTlsVersionError(s.to_owned())),
        }
    }
}

/// Why TLS configuration could not be loaded. Every file problem names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{}: file not found", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: larger than {limit} bytes; not a PEM file?", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no certificate found (expected a `-----BEGIN CERTIFICATE-----` block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: certificate {position} of the chain is not a readable X.509 certificate", path.display())]
    BadCertificate { path: PathBuf, position: usize },
    #[error("{}: certificate {position} of the chain ({subject}) expired at {not_after}", path.display())]
    Expired {
        path: PathBuf,
        position: usize,
        subject: String,
        not_after: String,
    },
    #[error(
        "{}: no private key found (expected a `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },
    #[error("{}: unusable private key: {reason}", path.display())]
    BadPrivateKey { path: PathBuf, reason: String },
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: no usable CA certificate ({reason})", path.display())]
    BadCaBundle { path: PathBuf, reason: String },
    #[error("server name {name:?} is not valid: {reason}")]
    BadServerName { name: String, reason: &'static str },
    #[error("server name {name:?} is given to more than one certificate")]
    DuplicateServerName { name: String },
    #[error("a TLS listener needs at least one certificate")]
    NoCertificates,
    #[error("require_client_cert needs client_ca (the CA bundle to verify clients against)")]
    ClientCaRequired,
    #[error("rustls refused the configuration: {0}")]
    Config(String),
}

impl TlsError {
    /// The file the problem is in, if it is about a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            TlsError::Missing { path }
            | TlsError::Unreadable { path, .. }
            | TlsError::TooLarge { path, .. }
            | TlsError::Pem { path, .. }
            | TlsError::NoCertificate { path }
            | TlsError::BadCertificate { path, .. }
            | TlsError::Expired { path, .. }
            | TlsError::NoPrivateKey { path }
            | TlsError::BadPrivateKey { path, .. }
            | TlsError::BadCaBundle { path, .. } => Some(path),
            TlsError::KeyMismatch { key, .. } => Some(key),
            TlsError::BadServerName { .. }
            | TlsError::DuplicateServerName { .. }
            | TlsError::NoCertificates
            | TlsError::ClientCaRequired
            | TlsError::Config(_) => None,
        }
    }

    /// Whether a served certificate has expired.
    pub fn is_expired(&self) -> bool {
        matches!(self, TlsError::Expired { .. })
    }

    /// What was expected instead, phrased for [`InputError`](crate::config::InputError).
    pub(crate) fn expected(&self) -> &'static str {
        match self {
            TlsError::NoPrivateKey { .. }
            | TlsError::BadPrivateKey { .. }
            | TlsError::KeyMismatch { .. } => "a PEM private key matching its certificate",
            TlsError::BadCaBundle { .. } => "a PEM bundle of CA certificates",
            TlsError::BadServerName { .. } | TlsError::DuplicateServerName { .. } => {
                "DNS names or *.suffix wildcards, each on one certificate"
            }
            TlsError::Expired { .. } => "a certificate chain that has not expired",
            _ => "readable PEM certificates and keys",
        }
    }
}

/// The crypto provider every configuration here is built with. Explicit rather than
/// the process default, so an embedder's choice elsewhere cannot change ours.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Seconds since the Unix epoch now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Whole days from now until `not_after` (negative once it has passed).
fn days_until(not_after: i64) -> i64 {
    not_after.saturating_sub(unix_now()).div_euclid(86_400)
}

/// Counts a completed handshake.
fn count_handshake(stats: &TlsStats, common: &rustls::CommonState) {
    stats.handshake.inc();
    if common.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        stats.session_reused.inc();
    }
    match common.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => stats.versions_tls1_2.inc(),
        Some(rustls::ProtocolVersion::TLSv1_3) => stats.versions_tls1_3.inc(),
        _ => {}
    }
}

/// Counts a failed handshake under its reason. tokio-rustls reports rustls errors as
/// `io::Error`s of kind `InvalidData` wrapping the `rustls::Error`.
fn count_failure(stats: &TlsStats, error: &io::Error) {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let reason = match rustls_error {
        // Envoy counts verification failures apart from `connection_error`.
        Some(rustls::Error::NoCertificatesPresented) => {
            stats.fail_verify_no_cert.inc();
            return;
        }
        Some(rustls::Error::InvalidCertificate(_)) => {
            stats.fail_verify_error.inc();
            return;
        }
        Some(rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol) => {
            &stats.fail_incompatible
        }
        Some(rustls::Error::AlertReceived(_)) => &stats.fail_peer_alert,
        Some(_) => &stats.fail_protocol,
        None => &stats.fail_io,
    };
    reason.inc();
    stats.connection_error.inc();
}

/// Counts a handshake that ran out of time.
fn count_timeout(stats: &TlsStats) {
    stats.fail_handshake_timeout.inc();
    stats.connection_error.inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_in_both_spellings() {
        assert_eq!("1.3".parse(), Ok(TlsVersion::Tls13));
        assert_eq!("TLSv1.2".parse(), Ok(TlsVersion::Tls12));
        assert!("1.1".parse::<TlsVersion>().is_err());
        assert_eq!(TlsVersion::Tls13.to_string(), "TLSv1.3");
    }

    #[test]
    fn failures_are_counted_by_reason() {
        let stats = TlsStats::default();
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        count_failure(&stats, &wrap(rustls::Error::NoCertificatesPresented));
        count_failure(
            &stats,
            &wrap(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        );
        count_failure(&stats, &wrap(rustls::Error::NoApplicationProtocol));
        count_failure(
            &stats,
            &wrap(rustls::Error::AlertReceived(
                rustls::AlertDescription::BadCertificate,
            )),
        );
        count_failure(&stats, &wrap(rustls::Error::DecryptError));
        count_failure(&stats, &io::Error::from(io::ErrorKind::UnexpectedEof));
        count_timeout(&stats);
        assert_eq!(stats.fail_verify_no_cert.get(), 1);
        assert_eq!(stats.fail_verify_error.get(), 1);
        assert_eq!(stats.fail_incompatible.get(), 1);
        assert_eq!(stats.fail_peer_alert.get(), 1);
        assert_eq!(stats.fail_protocol.get(), 1);
        assert_eq!(stats.fail_io.get(), 1);
        assert_eq!(stats.fail_handshake_timeout.get(), 1);
        assert_eq!(stats.connection_error.get(), 5);
    }
}
