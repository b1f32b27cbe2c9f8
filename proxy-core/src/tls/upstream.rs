//! Upstream TLS: what a cluster trusts and presents, and the client side of the
//! handshake when it dials an endpoint.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use rustls_pki_types::ServerName;

use super::pem;
use super::{TlsError, TlsVersion, count_failure, count_handshake, count_timeout};
use crate::cluster::UpstreamProtocol;
use crate::config::EndpointAddress;
use crate::net::Stream;
use crate::stats::TlsStats;

/// Where the certificates that upstream servers are verified against come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// Mozilla's root program, compiled in (`webpki-roots`): for public origins.
    Webpki,
    /// A PEM bundle of CA certificates: for private PKI.
    File(PathBuf),
}

/// How a cluster originates TLS: what [`UpstreamTls::load`] reads at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsSpec {
    sni: Option<String>,
    roots: TrustRoots,
    client_cert: Option<(PathBuf, PathBuf)>,
    min_version: TlsVersion,
}

impl Default for UpstreamTlsSpec {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamTlsSpec {
    /// Verifies origins against Mozilla's roots, under the name each endpoint was
    /// written with (see [`sni`](Self::sni)); TLS 1.2 and 1.3; no client certificate.
    pub fn new() -> Self {
        Self {
            sni: None,
            roots: TrustRoots::Webpki,
            client_cert: None,
            min_version: TlsVersion::Tls12,
        }
    }

    /// The server name sent as SNI and verified in the origin's certificate, for every
    /// endpoint. Without it each endpoint uses its own host: the name in a `host:port`
    /// endpoint, else its IP address (verified against the certificate's IP SANs; no
    /// SNI is sent for an IP). A Unix-socket endpoint has no host, so it needs this.
    pub fn sni(mut self, name: impl Into<String>) -> Self {
        self.sni = Some(name.into());
        self
    }

    /// Verifies origins against the CA certificates in `path` (PEM) instead of
    /// Mozilla's roots.
    pub fn ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = TrustRoots::File(path.into());
        self
    }

    /// Presents this certificate chain and key when the origin asks for one (mTLS).
    pub fn client_cert(mut self, cert_chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert_chain.into(), key.into()));
        self
    }

    /// The oldest protocol version accepted. Default 1.2.
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    pub fn server_name(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    pub fn roots(&self) -> &TrustRoots {
        &self.roots
    }

    /// Every file the configuration is read from.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        let ca = match &self.roots {
            TrustRoots::File(path) => Some(path.as_path()),
            TrustRoots::Webpki => None,
        };
        ca.into_iter().chain(
            self.client_cert
                .iter()
                .flat_map(|(cert, key)| [cert.as_path(), key.as_path()]),
        )
    }
}

/// A cluster's TLS origination settings, loaded. Attach with
/// [`Cluster::tls`](crate::cluster::Cluster::tls) (or
/// [`Inputs::cluster_tls`](crate::config::Inputs::cluster_tls) from generated code).
///
/// Holds one rustls client configuration per upstream protocol, so ALPN offers exactly
/// what the cluster speaks (`h2` or `http/1.1`); each keeps its own session cache, so
/// reconnecting to an origin resumes instead of doing a full handshake.
pub struct UpstreamTls {
    spec: UpstreamTlsSpec,
    sni: Option<ServerName<'static>>,
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
    first_expiry: Option<i64>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("spec", &self.spec)
            .field(
                "days_until_first_cert_expiring",
                &self.days_until_first_cert_expiring(),
            )
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Reads and checks the files in `spec` and builds the rustls configurations.
    /// Blocking file I/O: call at start-up.
    pub fn load(spec: UpstreamTlsSpec) -> Result<Self, TlsError> {
        let sni = spec
            .sni
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned()).map_err(|_| TlsError::BadServerName {
                    name: name.to_owned(),
                    reason: "not a DNS name or IP address",
                })
            })
            .transpose()?;
        let roots = match &spec.roots {
            TrustRoots::Webpki => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            TrustRoots::File(path) => pem::ca_bundle(path)?,
        };
        let roots = Arc::new(roots);
        let provider = super::provider();
        let client_cert = match &spec.client_cert {
            Some((cert, key)) => Some(pem::certified_key(cert, key, &provider, super::unix_now())?),
            None => None,
        };
        let first_expiry = client_cert.as_ref().map(|loaded| loaded.first_expiry);
        let client_cert = client_cert.map(|loaded| Arc::new(ClientCert(loaded.key)));
        let config = |alpn: &[u8]| -> Result<Arc<ClientConfig>, TlsError> {
            let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(spec.min_version.and_newer())
                .map_err(|error| TlsError::Config(error.to_string()))?
                .with_root_certificates(Arc::clone(&roots));
            let mut config = match &client_cert {
                Some(resolver) => builder
                    .with_client_cert_resolver(Arc::clone(resolver) as Arc<dyn ResolvesClientCert>),
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Self {
            http1: config(b"http/1.1")?,
            http2: config(b"h2")?,
            sni,
            spec,
            first_expiry,
        })
    }

    pub fn spec(&self) -> &UpstreamTlsSpec {
        &self.spec
    }

    /// Whole days until the client certificate's chain expires; `None` without one.
    pub fn days_until_first_cert_expiring(&self) -> Option<i64> {
        self.first_expiry.map(super::days_until)
    }

    fn config(&self, protocol: UpstreamProtocol) -> Arc<ClientConfig> {
        Arc::clone(match protocol {
            UpstreamProtocol::Http1 => &self.http1,
            UpstreamProtocol::Http2 => &self.http2,
        })
    }
}

/// Always offers the one configured client certificate.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// TLS as one cluster uses it: the connector for its protocol, each endpoint's server
/// name (worked out once, when the cluster is built), and its handshake counters.
pub(crate) struct ClusterTls {
    tls: Arc<UpstreamTls>,
    connector: tokio_rustls::TlsConnector,
    /// Parallel to the cluster's endpoints; `None` for a Unix socket without `sni`.
    server_names: Box<[Option<ServerName<'static>>]>,
    stats: Arc<TlsStats>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("spec", &self.tls.spec)
            .field("server_names", &self.server_names)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// `hosts` gives the host name an endpoint address was resolved from, if known.
    pub(crate) fn new<'e, 'h>(
        tls: Arc<UpstreamTls>,
        protocol: UpstreamProtocol,
        endpoints: impl Iterator<Item = &'e EndpointAddress>,
        hosts: impl Fn(&EndpointAddress) -> Option<&'h str>,
    ) -> Self {
        let server_names = endpoints
            .map(|address| server_name(&tls, address, hosts(address)))
            .collect();
        Self {
            connector: tokio_rustls::TlsConnector::from(tls.config(protocol)),
            tls,
            server_names,
            stats: Arc::default(),
        }
    }

    pub(crate) fn upstream(&self) -> &Arc<UpstreamTls> {
        &self.tls
    }

    pub(crate) fn stats(&self) -> &TlsStats {
        &self.stats
    }

    /// The server name for the endpoint at `index`.
    pub(crate) fn server_name(&self, index: usize) -> Option<&ServerName<'static>> {
        self.server_names.get(index).and_then(Option::as_ref)
    }

    /// The server name for an endpoint discovered after start-up (DNS), resolved from
    /// `host`: as for configured endpoints, `sni` first.
    pub(crate) fn server_name_for(
        &self,
        address: &EndpointAddress,
        host: Option<&str>,
    ) -> Option<ServerName<'static>> {
        server_name(&self.tls, address, host)
    }

    /// Runs the client side of a handshake on a connected `stream`, counting the
    /// outcome. The caller bounds it with the connect timeout and reports a timeout
    /// through [`timed_out`](Self::timed_out).
    pub(crate) async fn handshake(
        &self,
        stream: Stream,
        server_name: ServerName<'static>,
    ) -> io::Result<Stream> {
        match self.connector.connect(server_name, stream).await {
            Ok(tls) => {
                count_handshake(&self.stats, tls.get_ref().1);
                Ok(Stream::TlsClient(Box::new(tls)))
            }
            Err(error) => {
                count_failure(&self.stats, &error);
                Err(error)
            }
        }
    }

    pub(crate) fn timed_out(&self) {
        count_timeout(&self.stats);
    }
}

fn server_name(
    tls: &UpstreamTls,
    address: &EndpointAddress,
    host: Option<&str>,
) -> Option<ServerName<'static>> {
    if let Some(sni) = &tls.sni {
        return Some(sni.clone());
    }
    if let Some(name) = host.and_then(|host| ServerName::try_from(host.to_owned()).ok()) {
        return Some(name);
    }
    match address {
        EndpointAddress::Tcp(addr) => Some(ServerName::IpAddress(addr.ip().into())),
        EndpointAddress::Unix(_) => None,
    }
}
