//! Downstream TLS: a listener's certificates (chosen by SNI), client-certificate
//! verification, the per-connection handshake, and certificate reload.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::DnsName;

use super::identity::TlsSession;
use super::pem::{self, FileStamp};
use super::{TlsError, TlsVersion, count_failure, count_handshake, count_timeout};
use crate::net::Stream;
use crate::stats::{Counter, TlsStats};

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is requested (plain TLS). The default without `client_ca`.
    #[default]
    None,
    /// A certificate is requested and, if presented, must verify against `client_ca`;
    /// clients without one are served. The default with `client_ca` (Envoy's
    /// `require_client_certificate: false`).
    Optional,
    /// A certificate is required and must verify against `client_ca`.
    Required,
}

/// One certificate chain with its private key, and the server names it is served for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    cert_chain: PathBuf,
    private_key: PathBuf,
    server_names: Vec<String>,
}

impl CertificateSpec {
    /// A chain (leaf first, then intermediates) and its key, both PEM; they may be the
    /// same file.
    pub fn new(cert_chain: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> Self {
        Self {
            cert_chain: cert_chain.into(),
            private_key: private_key.into(),
            server_names: Vec::new(),
        }
    }

    /// The SNI names this certificate is chosen for: exact names (`api.example.com`) and
    /// wildcards (`*.example.com`, matching any name ending in `.example.com`, the
    /// longest suffix winning, as Envoy's `server_names`). Without any, the
    /// certificate's own DNS SANs are used.
    pub fn server_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.server_names = names.into_iter().map(Into::into).collect();
        self
    }

    pub fn cert_chain(&self) -> &Path {
        &self.cert_chain
    }

    pub fn private_key(&self) -> &Path {
        &self.private_key
    }
}

/// How a listener terminates TLS: what [`ServerTls::load`] reads at start-up and
/// re-reads on reload. A builder; every setting has a default but the first certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSpec {
    certificates: Vec<CertificateSpec>,
    client_ca: Option<PathBuf>,
    client_auth: ClientAuth,
    min_version: TlsVersion,
    alpn: Vec<Vec<u8>>,
    handshake_timeout: Duration,
    reload_interval: Option<Duration>,
}

impl ServerTlsSpec {
    /// Handshakes not finished by then are abandoned, so a client that connects and
    /// stays silent cannot hold a task (and a file descriptor) forever.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// How often the certificate files are checked for changes.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

    /// Serves `certificate` to every client (and is the default once others are added).
    /// TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, no client certificates, a 10 s handshake
    /// timeout, files checked for changes every 10 s.
    pub fn new(certificate: CertificateSpec) -> Self {
        Self {
            certificates: vec![certificate],
            client_ca: None,
            client_auth: ClientAuth::None,
            min_version: TlsVersion::Tls12,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            reload_interval: Some(Self::DEFAULT_RELOAD_INTERVAL),
        }
    }

    /// Adds a certificate chosen by SNI. The first certificate stays the default, served
    /// when the client sends no SNI or a name no certificate is for.
    pub fn certificate(mut self, certificate: CertificateSpec) -> Self {
        self.certificates.push(certificate);
        self
    }

    /// Verifies client certificates against the CA certificates in `path` (PEM). Clients
    /// without a certificate are still served unless
    /// [`require_client_cert`](Self::require_client_cert) is set.
    pub fn client_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(path.into());
        if self.client_auth == ClientAuth::None {
            self.client_auth = ClientAuth::Optional;
        }
        self
    }

    /// Refuses clients without a valid certificate (mTLS). Needs
    /// [`client_ca`](Self::client_ca).
    pub fn require_client_cert(mut self, required: bool) -> Self {
        self.client_auth = match (required, &self.client_ca) {
            (true, _) => ClientAuth::Required,
            (false, Some(_)) => ClientAuth::Optional,
            (false, None) => ClientAuth::None,
        };
        self
    }

    /// The oldest protocol version accepted. Default 1.2.
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// The ALPN protocols offered, in preference order. Default `h2`, `http/1.1`; use
    /// `["http/1.1"]` to keep clients on HTTP/1.1.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How often to check the files for changes; `None` loads them once.
    pub fn reload_interval(mut self, interval: Option<Duration>) -> Self {
        self.reload_interval = interval;
        self
    }

    pub fn certificates(&self) -> &[CertificateSpec] {
        &self.certificates
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// Every file the configuration is read from, for reload and diagnostics.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.certificates
            .iter()
            .flat_map(|c| [c.cert_chain.as_path(), c.private_key.as_path()])
            .chain(self.client_ca.as_deref())
    }
}

/// A listener's TLS configuration, loaded and live. See the [module docs](super).
///
/// Shared (`Arc`) by the listeners it is attached to with
/// [`ListenerConfig::tls`](crate::listener::ListenerConfig::tls). The current rustls
/// configuration sits behind a lock taken once per handshake (never per request); a
/// reload replaces it whole, so certificates, keys and the client CA always change
/// together. Resumption state is per configuration: after a reload, clients do full
/// handshakes again, and a session from before cannot skip a changed client CA.
pub struct ServerTls {
    spec: ServerTlsSpec,
    current: RwLock<Arc<ServerConfig>>,
    /// The files as they were before the last load attempt.
    stamps: Mutex<Vec<FileStamp>>,
    first_expiry: AtomicI64,
    watching: AtomicBool,
    reloads: Counter,
    reload_errors: Counter,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("spec", &self.spec)
            .field(
                "days_until_first_cert_expiring",
                &self.days_until_first_cert_expiring(),
            )
            .field("reloads", &self.reloads.get())
            .field("reload_errors", &self.reload_errors.get())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks every file in `spec` and builds the rustls configuration.
    /// Blocking file I/O: call at start-up (or from a blocking thread).
    pub fn load(spec: ServerTlsSpec) -> Result<Self, TlsError> {
        let stamps = stamp(&spec);
        let loaded = build(&spec)?;
        Ok(Self {
            spec,
            current: RwLock::new(loaded.config),
            stamps: Mutex::new(stamps),
            first_expiry: AtomicI64::new(loaded.first_expiry),
            watching: AtomicBool::new(false),
            reloads: Counter::default(),
            reload_errors: Counter::default(),
        })
    }

    pub fn spec(&self) -> &ServerTlsSpec {
        &self.spec
    }

    /// Re-reads every file now and, if all is well, serves the result to new
    /// handshakes. On error the configuration in use is kept. Blocking file I/O.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = stamp(&self.spec);
        self.reload_with(stamps)
    }

    fn reload_with(&self, stamps: Vec<FileStamp>) -> Result<(), TlsError> {
        *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
        match build(&self.spec) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded.config;
                self.first_expiry
                    .store(loaded.first_expiry, Ordering::Relaxed);
                self.reloads.inc();
                Ok(())
            }
            Err(error) => {
                self.reload_errors.inc();
                Err(error)
            }
        }
    }

    /// Reloads if any file changed since the last attempt; for the watch task.
    fn reload_if_changed(&self) {
        let stamps = stamp(&self.spec);
        if *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) == stamps {
            return;
        }
        match self.reload_with(stamps) {
            Ok(()) => tracing::info!(
                files = ?self.spec.files().collect::<Vec<_>>(),
                days_until_first_cert_expiring = self.days_until_first_cert_expiring(),
                "TLS certificates reloaded"
            ),
            Err(error) => tracing::error!(
                %error,
                "TLS reload failed; still serving the previous certificates"
            ),
        }
    }

    /// Polls the files every `reload_interval` (if set) and reloads when one changed.
    /// Runs until dropped; the server spawns it for each TLS listener and aborts it at
    /// shutdown. File reads and parsing run on the blocking pool.
    pub async fn watch(self: Arc<Self>) {
        let Some(interval) = self.spec.reload_interval else {
            return;
        };
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the files were just read
        loop {
            ticks.tick().await;
            let tls = Arc::clone(&self);
            if let Err(error) = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
                tracing::error!(%error, "TLS reload task failed");
            }
        }
    }

    /// Claims the one watch task of this configuration: `true` the first time only, so
    /// a configuration shared by several listeners is polled once.
    pub(crate) fn start_watching(&self) -> bool {
        !self.watching.swap(true, Ordering::Relaxed)
    }

    /// Whole days until the first served certificate expires (Envoy's
    /// `server.days_until_first_cert_expiring`), from the configuration in use.
    pub fn days_until_first_cert_expiring(&self) -> i64 {
        super::days_until(self.first_expiry.load(Ordering::Relaxed))
    }

    /// Successful reloads (by the watch task or [`reload`](Self::reload)).
    pub fn reloads(&self) -> u64 {
        self.reloads.get()
    }

    /// Failed reloads; the previous configuration stayed in use each time.
    pub fn reload_errors(&self) -> u64 {
        self.reload_errors.get()
    }

    /// The rustls configuration new handshakes use now.
    pub(crate) fn current_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs the server side of a handshake on a freshly accepted `stream`, within the
    /// handshake timeout, counting the outcome in `stats`. Called inside the
    /// connection's task. `None` when the handshake failed (logged at debug: a client
    /// problem, not ours).
    pub(crate) async fn accept(
        &self,
        stream: Stream,
        stats: &TlsStats,
    ) -> Option<(Stream, TlsSession)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current_config());
        let handshake = acceptor.accept(stream);
        match tokio::time::timeout(self.spec.handshake_timeout, handshake).await {
            Ok(Ok(tls)) => {
                let (_, connection) = tls.get_ref();
                count_handshake(stats, connection);
                if connection.peer_certificates().is_none() {
                    stats.no_certificate.inc();
                }
                let session = TlsSession::new(connection);
                Some((Stream::TlsServer(Box::new(tls)), session))
            }
            Ok(Err(error)) => {
                count_failure(stats, &error);
                tracing::debug!(%error, "downstream TLS handshake failed");
                None
            }
            Err(_) => {
                count_timeout(stats);
                tracing::debug!(timeout = ?self.spec.handshake_timeout, "downstream TLS handshake timed out");
                None
            }
        }
    }
}

fn stamp(spec: &ServerTlsSpec) -> Vec<FileStamp> {
    spec.files().map(FileStamp::of).collect()
}

/// One load of a spec's files.
struct Loaded {
    config: Arc<ServerConfig>,
    first_expiry: i64,
}

fn build(spec: &ServerTlsSpec) -> Result<Loaded, TlsError> {
    if spec.client_ca.is_none() && spec.client_auth != ClientAuth::None {
        return Err(TlsError::ClientCaRequired);
    }
    let provider = super::provider();
    let now = super::unix_now();
    let mut keys = Vec::with_capacity(spec.certificates.len());
    let mut first_expiry = i64::MAX;
    for certificate in &spec.certificates {
        let loaded = pem::certified_key(
            &certificate.cert_chain,
            &certificate.private_key,
            &provider,
            now,
        )?;
        first_expiry = first_expiry.min(loaded.first_expiry);
        keys.push((certificate, loaded));
    }
    let resolver = SniResolver::new(&keys)?;

    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(spec.min_version.and_newer())
        .map_err(|error| TlsError::Config(error.to_string()))?;
    let builder = match (&spec.client_ca, spec.client_auth) {
        (Some(path), mode @ (ClientAuth::Optional | ClientAuth::Required)) => {
            let roots = Arc::new(pem::ca_bundle(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match mode {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|error| TlsError::BadCaBundle {
                path: path.clone(),
                reason: error.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols.clone_from(&spec.alpn);
    Ok(Loaded {
        config: Arc::new(config),
        first_expiry,
    })
}

/// Picks the certificate for a handshake by SNI: an exact name, else the longest
/// `*.suffix`, else the first certificate.
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix without `*.`: `example.com` for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Explicit names first (a name given to two certificates is an error), then each
    /// certificate's DNS SANs when it has no explicit names (the first certificate
    /// listed wins an overlap there).
    fn new(keys: &[(&CertificateSpec, pem::LoadedKey)]) -> Result<Self, TlsError> {
        let default = keys
            .first()
            .map(|(_, loaded)| Arc::clone(&loaded.key))
            .ok_or(TlsError::NoCertificates)?;
        let mut resolver = Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        };
        for (spec, loaded) in keys {
            for name in &spec.server_names {
                let (table, key) = resolver.slot(name)?;
                if table.insert(key, Arc::clone(&loaded.key)).is_some() {
                    return Err(TlsError::DuplicateServerName { name: name.clone() });
                }
            }
        }
        for (spec, loaded) in keys {
            if !spec.server_names.is_empty() {
                continue;
            }
            for name in &loaded.leaf.dns_names {
                // webpki only yields valid names, so this only skips the unexpected.
                if let Ok((table, key)) = resolver.slot(name) {
                    table.entry(key).or_insert_with(|| Arc::clone(&loaded.key));
                }
            }
        }
        Ok(resolver)
    }

    /// The table and key `name` goes in, validated and lowercased.
    fn slot(
        &mut self,
        name: &str,
    ) -> Result<(&mut HashMap<String, Arc<CertifiedKey>>, String), TlsError> {
        let bad = |reason| TlsError::BadServerName {
            name: name.to_owned(),
            reason,
        };
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let (table, key) = match lower.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix.to_owned()),
            None => (&mut self.exact, lower),
        };
        if key.contains('*') {
            return Err(bad(
                "`*` is only allowed as the whole first label, as in *.example.com",
            ));
        }
        if DnsName::try_from(key.as_str()).is_err() {
            return Err(bad("not a DNS name"));
        }
        Ok((table, key))
    }

    fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        // rustls lowercases SNI already; this only allocates if that ever changes.
        let name: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if let Some(key) = self.exact.get(name.as_ref()) {
            return key;
        }
        let mut rest = name.as_ref();
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(key) = self.wildcard.get(suffix) {
                return key;
            }
            rest = suffix;
        }
        &self.default
    }
}

/// Names only: a `CertifiedKey` prints its whole chain.
impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.select(client_hello.server_name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        Arc::new(
            CertifiedKey::from_der(
                vec![cert.cert.der().clone()],
                der,
                &super::super::provider(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn sni_prefers_exact_then_longest_wildcard_then_default() {
        let (default, exact, wide, narrow) = (key("d"), key("e"), key("w"), key("n"));
        let resolver = SniResolver {
            exact: HashMap::from([("api.example.com".to_owned(), Arc::clone(&exact))]),
            wildcard: HashMap::from([
                ("example.com".to_owned(), Arc::clone(&wide)),
                ("eu.example.com".to_owned(), Arc::clone(&narrow)),
            ]),
            default: Arc::clone(&default),
        };
        let pick = |name| resolver.select(name);
        assert!(Arc::ptr_eq(pick(Some("api.example.com")), &exact));
        assert!(Arc::ptr_eq(pick(Some("API.Example.com")), &exact));
        assert!(Arc::ptr_eq(pick(Some("www.example.com")), &wide));
        assert!(Arc::ptr_eq(pick(Some("a.b.example.com")), &wide));
        assert!(Arc::ptr_eq(pick(Some("x.eu.example.com")), &narrow));
        assert!(Arc::ptr_eq(pick(Some("example.com")), &default));
        assert!(Arc::ptr_eq(pick(Some("other.test")), &default));
        assert!(Arc::ptr_eq(pick(None), &default));
    }

    #[test]
    fn bad_and_duplicate_server_names_are_rejected() {
        let mut resolver = SniResolver {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: key("d"),
        };
        assert!(resolver.slot("*.example.com").is_ok());
        assert!(resolver.slot("Example.COM.").is_ok());
        for bad in ["a.*.com", "*", "*.", "exa mple.com", ""] {
            assert!(
                matches!(resolver.slot(bad), Err(TlsError::BadServerName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn require_client_cert_without_ca_is_an_error() {
        let spec = ServerTlsSpec::new(CertificateSpec::new("/nonexistent", "/nonexistent"))
            .require_client_cert(true);
        assert_eq!(spec.client_auth(), ClientAuth::Required);
        assert!(matches!(
            ServerTls::load(spec),
            Err(TlsError::ClientCaRequired)
        ));
        let spec = ServerTlsSpec::new(CertificateSpec::new("/c", "/k"))
            .require_client_cert(true)
            .client_ca("/ca");
        assert_eq!(spec.client_auth(), ClientAuth::Required);
        let spec = spec.require_client_cert(false);
        assert_eq!(spec.client_auth(), ClientAuth::Optional);
    }
}
