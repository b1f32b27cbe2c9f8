//! TLS termination and origination, driven in-process: the proxy's `Server` with a
//! hand-written pipeline, rustls clients (tokio-rustls + hyper's client connections),
//! small TLS origins written here on TCP and Unix sockets, and real `curl` and
//! `openssl s_client`. Certificates are generated with rcgen into a temporary directory
//! for each test; every address is `127.0.0.1:0` or a socket in that directory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic with its error

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_core::cluster::{Cluster, ClusterOptions, UpstreamProtocol};
use proxy_core::config::{BindAddress, EndpointAddress, Inputs};
use proxy_core::http::{Downstream, ResponseBody, exchange};
use proxy_core::listener::ListenerConfig;
use proxy_core::net::Stream;
use proxy_core::route::{Pipeline, Route, RouteAction, RoutePolicy, RouteRequest, Router};
use proxy_core::server::{Server, ServerSettings};
use proxy_core::tls::{
    CertificateSpec, ServerTls, ServerTlsSpec, TlsError, TlsSession, TlsVersion, UpstreamTls,
    UpstreamTlsSpec,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{eventually, within};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ----- certificates -------------------------------------------------------------------

/// A CA and the files it issues, in a temporary directory.
struct Pki {
    dir: TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_path: PathBuf,
}

/// An issued certificate: its PEM files and its DER.
#[derive(Clone)]
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// What to put in a certificate.
#[derive(Default)]
struct Names<'a> {
    cn: &'a str,
    dns: &'a [&'a str],
    uris: &'a [&'a str],
    /// `(year, month, day)`; rcgen's default (year 4096) when `None`.
    not_after: Option<(i32, u8, u8)>,
}

impl Pki {
    fn new(name: &str) -> Self {
        Self::in_dir(tempfile::tempdir().unwrap(), name)
    }

    fn in_dir(dir: TempDir, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let cert = params.self_signed(&key).unwrap();
        let ca_path = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, cert.pem()).unwrap();
        Self {
            ca: Issuer::new(params, key),
            ca_path,
            dir,
        }
    }

    /// The server certificate most tests present: `proxy.test`.
    fn server(&self) -> Leaf {
        self.issue(
            "server",
            Names {
                cn: "proxy.test",
                dns: &["proxy.test"],
                ..Names::default()
            },
        )
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Issues a certificate and writes `<file>.pem` and `<file>.key` (atomically, by
    /// rename, as a certificate manager does).
    fn issue(&self, file: &str, names: Names<'_>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(
            names
                .dns
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        for uri in names.uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().unwrap()));
        }
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Proxy Tests");
        params.distinguished_name.push(DnType::CommonName, names.cn);
        if let Some((y, m, d)) = names.not_after {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let leaf = Leaf {
            cert: self.path(&format!("{file}.pem")),
            key: self.path(&format!("{file}.key")),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        };
        write_atomically(&leaf.cert, cert.pem().as_bytes());
        write_atomically(&leaf.key, key.serialize_pem().as_bytes());
        leaf
    }
}

fn write_atomically(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ----- the proxy ----------------------------------------------------------------------

/// `/whoami` answers with what the request path knows about the TLS session; every
/// other path goes to the upstream cluster, if there is one.
struct TestPipeline {
    upstream: Option<Arc<Cluster>>,
}

impl Router for TestPipeline {
    fn route<Q: RouteRequest + ?Sized>(&self, _request: &Q) -> Route<'_> {
        static POLICY: RoutePolicy = RoutePolicy::new("test/upstream/0", None);
        match &self.upstream {
            Some(cluster) => Route {
                action: RouteAction::Forward(cluster, &POLICY),
                chain: 0,
                name: POLICY.name,
            },
            None => Route::none(0),
        }
    }
}

impl Pipeline for TestPipeline {
    async fn handle(
        &'static self,
        request: Request<proxy_core::http::IncomingBody>,
        downstream: &Downstream,
    ) -> Response<ResponseBody> {
        if request.uri().path() == "/whoami" {
            let session = request.extensions().get::<Arc<TlsSession>>();
            return Response::new(ResponseBody::full(describe(session.map(Arc::as_ref))));
        }
        let (parts, body) = request.into_parts();
        let route = self.route(&parts);
        exchange(&(), downstream, route, parts, body).await
    }
}

fn describe(session: Option<&TlsSession>) -> String {
    let Some(session) = session else {
        return "plaintext".to_owned();
    };
    format!(
        "version={} alpn={} sni={} client={}",
        session.version().map_or("-".to_owned(), |v| v.to_string()),
        session
            .alpn()
            .map_or("-".to_owned(), |a| String::from_utf8_lossy(a).into_owned()),
        session.server_name().unwrap_or("-"),
        session.client().map_or("-".to_owned(), |c| c.xfcc()),
    )
}

/// Serves a TLS listener (or a plaintext one) on `127.0.0.1:0`.
fn proxy(tls: Option<Arc<ServerTls>>, upstream: Option<Arc<Cluster>>) -> (Server, SocketAddr) {
    let mut server = Server::new(ServerSettings {
        drain_timeout: Duration::from_secs(2),
        ..ServerSettings::default()
    });
    let mut listener = ListenerConfig::new("edge", "127.0.0.1:0".parse().unwrap());
    if let Some(tls) = tls {
        listener = listener.tls(tls);
    }
    // Pipelines live for the process in a real proxy; a test leaks one the same way.
    let pipeline = Box::leak(Box::new(TestPipeline { upstream }));
    let BindAddress::Tcp(address) = server.http(&listener, pipeline).unwrap() else {
        panic!("expected a TCP address")
    };
    (server, address)
}

fn load(spec: ServerTlsSpec) -> Arc<ServerTls> {
    Arc::new(ServerTls::load(spec).unwrap())
}

// ----- clients ------------------------------------------------------------------------

/// What a test client trusts and presents.
struct ClientSetup<'a> {
    trust: &'a Pki,
    versions: &'a [&'static rustls::SupportedProtocolVersion],
    alpn: &'a [&'a [u8]],
    identity: Option<&'a Leaf>,
}

impl<'a> ClientSetup<'a> {
    fn new(trust: &'a Pki) -> Self {
        Self {
            trust,
            versions: rustls::DEFAULT_VERSIONS,
            alpn: &[b"http/1.1"],
            identity: None,
        }
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(&self.trust.ca_path).unwrap();
        use rustls::pki_types::pem::PemObject as _;
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match self.identity {
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![leaf.der.clone()],
                    PrivateKeyDer::Pkcs8(leaf.key_der.clone().into()),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    async fn connect(
        &self,
        address: SocketAddr,
        name: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(address).await?;
        let name = ServerName::try_from(name.to_owned()).unwrap();
        tokio_rustls::TlsConnector::from(self.config())
            .connect(name, tcp)
            .await
    }
}

/// The leaf certificate a server presented.
fn presented(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// An HTTP client connection over any transport.
enum Client {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

struct Reply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: String,
}

impl Client {
    async fn http1<IO: AsyncRead + AsyncWrite + Send + Unpin + 'static>(io: IO) -> Self {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(connection);
        Client::H1(sender)
    }

    async fn http2<IO: AsyncRead + AsyncWrite + Send + Unpin + 'static>(io: IO) -> Self {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(connection);
        Client::H2(sender)
    }

    async fn get(&mut self, path: &str) -> Result<Reply, hyper::Error> {
        let request = |uri: String| {
            Request::get(uri)
                .header(http::header::HOST, "proxy.test")
                .body(Empty::new())
                .unwrap()
        };
        let response = match self {
            Client::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request(path.to_owned())).await?
            }
            Client::H2(sender) => {
                sender.ready().await?;
                sender
                    .send_request(request(format!("https://proxy.test{path}")))
                    .await?
            }
        };
        let (head, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: head.status,
            version: head.version,
            headers: head.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One HTTP/1.1 `GET` over a new TLS connection.
async fn get_once(setup: &ClientSetup<'_>, address: SocketAddr, name: &str, path: &str) -> Reply {
    let tls = within("handshake", setup.connect(address, name))
        .await
        .unwrap();
    within("request", Client::http1(tls).await.get(path))
        .await
        .unwrap()
}

// ----- TLS origins --------------------------------------------------------------------

/// A TLS origin on `listener` answering every request with what it saw:
/// `origin version=<HTTP version> sni=<SNI> xfp=<x-forwarded-proto> client=<CN>`.
fn tls_origin(listener: OriginListener, config: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let stream = match &listener {
                OriginListener::Tcp(l) => Stream::Tcp(l.accept().await.unwrap().0),
                OriginListener::Unix(l) => Stream::Unix(l.accept().await.unwrap().0),
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let connection = tls.get_ref().1;
                let sni = connection.server_name().unwrap_or("-").to_owned();
                let client = connection
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|cert| proxy_core::tls::ClientIdentity::from_certificate(cert))
                    .map_or("-".to_owned(), |id| id.subject().to_owned());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let xfp = request
                        .headers()
                        .get("x-forwarded-proto")
                        .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned());
                    let body = format!(
                        "origin version={:?} sni={sni} xfp={xfp} client={client}",
                        request.version()
                    );
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}

enum OriginListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A rustls server configuration for an origin presenting `leaf`, optionally requiring
/// client certificates issued by `client_ca`.
fn origin_config(leaf: &Leaf, client_ca: Option<&Pki>) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(pki) => {
            let mut roots = rustls::RootCertStore::empty();
            let ca = std::fs::read(&pki.ca_path).unwrap();
            use rustls::pki_types::pem::PemObject as _;
            for cert in CertificateDer::pem_slice_iter(&ca) {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            vec![leaf.der.clone()],
            PrivateKeyDer::Pkcs8(leaf.key_der.clone().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

fn cluster(
    name: &'static str,
    endpoint: EndpointAddress,
    protocol: UpstreamProtocol,
    tls: UpstreamTlsSpec,
) -> Arc<Cluster> {
    let options = ClusterOptions::DEFAULT
        .connect_timeout(Duration::from_secs(5))
        .protocol(protocol);
    let tls = Arc::new(UpstreamTls::load(tls).unwrap());
    Arc::new(Cluster::new(name, vec![endpoint], options).tls(tls))
}

/// `GET /` through a plaintext proxy listener in front of `cluster`.
async fn through_proxy(cluster: &Arc<Cluster>) -> Reply {
    let (server, address) = proxy(None, Some(Arc::clone(cluster)));
    let tcp = TcpStream::connect(address).await.unwrap();
    let reply = within("proxied request", Client::http1(tcp).await.get("/"))
        .await
        .unwrap();
    server.shutdown().await;
    reply
}

// ----- tests: termination -------------------------------------------------------------

#[tokio::test]
async fn tls12_and_tls13_handshakes_serve_http1_and_min_version_is_enforced() {
    let pki = Pki::new("t");
    let leaf = pki.server();
    let spec = ServerTlsSpec::new(CertificateSpec::new(&leaf.cert, &leaf.key));
    let (server, address) = proxy(Some(load(spec.clone())), None);

    for (versions, expected) in [
        (&[&rustls::version::TLS12][..], "TLSv1.2"),
        (&[&rustls::version::TLS13][..], "TLSv1.3"),
    ] {
        let setup = ClientSetup {
            versions,
            ..ClientSetup::new(&pki)
        };
        let reply = get_once(&setup, address, "proxy.test", "/whoami").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.version, Version::HTTP_11);
        assert_eq!(
            reply.body,
            format!("version={expected} alpn=http/1.1 sni=proxy.test client=-")
        );
    }
    let stats = Arc::clone(&server.tls_stats()[0].1);
    assert_eq!(stats.handshake.get(), 2);
    assert_eq!(stats.versions_tls1_2.get(), 1);
    assert_eq!(stats.versions_tls1_3.get(), 1);
    assert_eq!(stats.no_certificate.get(), 2);
    server.shutdown().await;

    // A 1.3-only listener refuses a 1.2-only client.
    let (server, address) = proxy(Some(load(spec.min_version(TlsVersion::Tls13))), None);
    let setup = ClientSetup {
        versions: &[&rustls::version::TLS12],
        ..ClientSetup::new(&pki)
    };
    let refused = within("handshake", setup.connect(address, "proxy.test")).await;
    assert!(refused.is_err(), "a TLS 1.2 client got through");
    let stats = Arc::clone(&server.tls_stats()[0].1);
    eventually("failure counted", || stats.connection_error.get() == 1).await;
    assert_eq!(stats.fail_incompatible.get(), 1);
    assert_eq!(stats.handshake.get(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn alpn_h2_is_served_as_http2_and_https_is_forwarded_as_the_scheme() {
    let pki = Pki::new("t");
    let leaf = pki.server();
    let origin_leaf = pki.issue(
        "origin",
        Names {
            cn: "origin",
            dns: &["origin.test"],
            ..Names::default()
        },
    );
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_address = origin.local_addr().unwrap();
    tls_origin(
        OriginListener::Tcp(origin),
        origin_config(&origin_leaf, None),
    );
    let upstream = cluster(
        "origin",
        EndpointAddress::Tcp(origin_address),
        UpstreamProtocol::Http1,
        UpstreamTlsSpec::new().ca(&pki.ca_path).sni("origin.test"),
    );
    let tls = load(ServerTlsSpec::new(CertificateSpec::new(
        &leaf.cert, &leaf.key,
    )));
    let (server, address) = proxy(Some(tls), Some(upstream));

    let setup = ClientSetup {
        alpn: &[b"h2", b"http/1.1"],
        ..ClientSetup::new(&pki)
    };
    let stream = within("handshake", setup.connect(address, "proxy.test"))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut client = Client::http2(stream).await;
    let reply = within("whoami", client.get("/whoami")).await.unwrap();
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(
        reply.body,
        "version=TLSv1.3 alpn=h2 sni=proxy.test client=-"
    );
    // The same HTTP/2 connection, forwarded: the origin sees `x-forwarded-proto: https`.
    let reply = within("forwarded", client.get("/")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        "origin version=HTTP/1.1 sni=origin.test xfp=https client=-"
    );

    // A client offering only http/1.1 gets HTTP/1.1.
    let reply = get_once(&ClientSetup::new(&pki), address, "proxy.test", "/whoami").await;
    assert_eq!(reply.version, Version::HTTP_11);
    assert!(reply.body.contains("alpn=http/1.1"), "{}", reply.body);
    server.shutdown().await;
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_the_default_certificate() {
    let pki = Pki::new("t");
    // The default also lists other.test among its SANs (so clients can verify it) but
    // has explicit server names, so other.test reaches it only as the fallback.
    let default = pki.issue(
        "default",
        Names {
            cn: "default",
            dns: &["default.test", "other.test", "127.0.0.1"],
            ..Names::default()
        },
    );
    let exact = pki.issue(
        "exact",
        Names {
            cn: "exact",
            dns: &["api.example.com"],
            ..Names::default()
        },
    );
    let wildcard = pki.issue(
        "wildcard",
        Names {
            cn: "wildcard",
            dns: &["*.example.com"],
            ..Names::default()
        },
    );
    let spec = ServerTlsSpec::new(
        CertificateSpec::new(&default.cert, &default.key).server_names(["default.test"]),
    )
    // Names from the certificates' SANs:
    .certificate(CertificateSpec::new(&exact.cert, &exact.key))
    .certificate(CertificateSpec::new(&wildcard.cert, &wildcard.key));
    let (server, address) = proxy(Some(load(spec)), None);
    let setup = ClientSetup::new(&pki);

    for (name, expected) in [
        ("api.example.com", &exact),
        ("www.example.com", &wildcard),
        ("default.test", &default),
        ("other.test", &default),
        // An IP: rustls sends no SNI at all.
        ("127.0.0.1", &default),
    ] {
        let stream = within("handshake", setup.connect(address, name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            presented(&stream) == expected.der,
            "{name}: wrong certificate"
        );
        let reply = within("request", Client::http1(stream).await.get("/whoami"))
            .await
            .unwrap();
        let sni = if name == "127.0.0.1" { "-" } else { name };
        assert!(
            reply.body.contains(&format!("sni={sni} ")),
            "{}",
            reply.body
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn required_client_certificates_are_verified_and_the_identity_reaches_requests() {
    let pki = Pki::new("t");
    let stranger = Pki::new("stranger");
    let leaf = pki.server();
    let client = pki.issue(
        "client",
        Names {
            cn: "web",
            dns: &["web.internal"],
            uris: &["spiffe://example.org/ns/default/sa/web"],
            ..Names::default()
        },
    );
    let forged = stranger.issue(
        "forged",
        Names {
            cn: "web",
            ..Names::default()
        },
    );
    let spec = ServerTlsSpec::new(CertificateSpec::new(&leaf.cert, &leaf.key))
        .client_ca(&pki.ca_path)
        .require_client_cert(true);
    let (server, address) = proxy(Some(load(spec)), None);
    let stats = Arc::clone(&server.tls_stats()[0].1);

    // Verified: the request path sees the identity.
    let setup = ClientSetup {
        identity: Some(&client),
        ..ClientSetup::new(&pki)
    };
    let reply = get_once(&setup, address, "proxy.test", "/whoami").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        format!(
            "version=TLSv1.3 alpn=http/1.1 sni=proxy.test client=Hash={};Subject=\"CN=web,O=Proxy Tests\";URI=spiffe://example.org/ns/default/sa/web;DNS=web.internal",
            sha256_hex(&client.der)
        )
    );

    // No certificate. Under TLS 1.3 the client's side of the handshake completes before
    // the server has checked it, so the refusal (an alert) arrives on the first read.
    let setup = ClientSetup::new(&pki);
    let refused = match within("handshake", setup.connect(address, "proxy.test")).await {
        Err(_) => true,
        Ok(stream) => within("request", Client::http1(stream).await.get("/whoami"))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    eventually("no-cert failure counted", || {
        stats.fail_verify_no_cert.get() == 1
    })
    .await;

    // A certificate from a CA the listener does not trust.
    let setup = ClientSetup {
        identity: Some(&forged),
        ..ClientSetup::new(&pki)
    };
    let refused = match within("handshake", setup.connect(address, "proxy.test")).await {
        Err(_) => true,
        Ok(stream) => within("request", Client::http1(stream).await.get("/whoami"))
            .await
            .is_err(),
    };
    assert!(refused, "a client with an untrusted certificate was served");
    eventually("verify failure counted", || {
        stats.fail_verify_error.get() == 1
    })
    .await;
    assert_eq!(stats.handshake.get(), 1);
    assert_eq!(
        stats.connection_error.get(),
        0,
        "verification failures count apart"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn optional_client_certificates_serve_clients_without_one() {
    let pki = Pki::new("t");
    let leaf = pki.server();
    let client = pki.issue(
        "client",
        Names {
            cn: "batch",
            ..Names::default()
        },
    );
    let spec =
        ServerTlsSpec::new(CertificateSpec::new(&leaf.cert, &leaf.key)).client_ca(&pki.ca_path);
    let (server, address) = proxy(Some(load(spec)), None);

    let anonymous = get_once(&ClientSetup::new(&pki), address, "proxy.test", "/whoami").await;
    assert!(anonymous.body.ends_with(" client=-"), "{}", anonymous.body);
    let setup = ClientSetup {
        identity: Some(&client),
        ..ClientSetup::new(&pki)
    };
    let known = get_once(&setup, address, "proxy.test", "/whoami").await;
    assert!(
        known.body.contains("Subject=\"CN=batch,O=Proxy Tests\""),
        "{}",
        known.body
    );
    let stats = Arc::clone(&server.tls_stats()[0].1);
    assert_eq!(stats.handshake.get(), 2);
    assert_eq!(stats.no_certificate.get(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn load_errors_are_typed_and_name_the_file() {
    let pki = Pki::new("t");
    let good = pki.issue(
        "good",
        Names {
            cn: "good",
            dns: &["good.test"],
            ..Names::default()
        },
    );
    let other = pki.issue(
        "other",
        Names {
            cn: "other",
            dns: &["other.test"],
            ..Names::default()
        },
    );
    let expired = pki.issue(
        "expired",
        Names {
            cn: "old",
            dns: &["old.test"],
            not_after: Some((2020, 1, 1)),
            ..Names::default()
        },
    );
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let missing = pki.path("missing.pem");
    let try_load = |cert: &Path, key: &Path| {
        ServerTls::load(ServerTlsSpec::new(CertificateSpec::new(cert, key)))
    };

    let error = try_load(&expired.cert, &expired.key).unwrap_err();
    assert!(error.is_expired(), "{error}");
    assert_eq!(error.path(), Some(expired.cert.as_path()));
    assert_eq!(
        error.to_string(),
        format!(
            "{}: certificate 1 of the chain (CN=old,O=Proxy Tests) expired at 2020-01-01T00:00:00Z",
            expired.cert.display()
        )
    );

    let error = try_load(&good.cert, &other.key).unwrap_err();
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: private key does not match the certificate in {}",
            other.key.display(),
            good.cert.display()
        )
    );

    let error = try_load(&missing, &good.key).unwrap_err();
    assert!(matches!(error, TlsError::Missing { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("{}: file not found", missing.display())
    );

    let error = try_load(&good.key, &good.key).unwrap_err();
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: no certificate found", good.key.display()))
    );

    let error = try_load(&good.cert, &good.cert).unwrap_err();
    assert!(matches!(error, TlsError::NoPrivateKey { .. }), "{error}");
    assert_eq!(error.path(), Some(good.cert.as_path()));

    let error = try_load(&garbage, &good.key).unwrap_err();
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");

    let unreadable = pki.path("unreadable.pem");
    std::fs::create_dir(&unreadable).unwrap(); // reading a directory fails
    let error = try_load(&unreadable, &good.key).unwrap_err();
    assert!(matches!(error, TlsError::Unreadable { .. }), "{error}");

    let error = ServerTls::load(
        ServerTlsSpec::new(CertificateSpec::new(&good.cert, &good.key)).client_ca(&good.key),
    )
    .unwrap_err();
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");

    let error = ServerTls::load(
        ServerTlsSpec::new(CertificateSpec::new(&good.cert, &good.key).server_names(["*.test"]))
            .certificate(CertificateSpec::new(&other.cert, &other.key).server_names(["*.TEST"])),
    )
    .unwrap_err();
    assert!(
        matches!(error, TlsError::DuplicateServerName { .. }),
        "{error}"
    );

    // Through `Inputs`, as generated code loads it: recorded, naming listener and file.
    let mut inputs = Inputs::with_lookup(|_| None);
    let listener = ListenerConfig::new("edge", "127.0.0.1:0".parse().unwrap());
    let listener = inputs.listener_tls(
        listener,
        ServerTlsSpec::new(CertificateSpec::new(&expired.cert, &expired.key)),
    );
    assert!(listener.tls_config().is_none());
    let errors = inputs.into_errors();
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(message.starts_with("listener `edge` tls="), "{message}");
    assert!(
        message.contains(&expired.cert.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("expired at 2020-01-01T00:00:00Z"),
        "{message}"
    );

    // A Unix-socket endpoint has no host name: TLS to it needs `sni`.
    let mut inputs = Inputs::with_lookup(|_| None);
    let unix = Cluster::new(
        "pipe",
        vec![EndpointAddress::Unix(pki.path("origin.sock"))],
        ClusterOptions::DEFAULT,
    );
    let _ = inputs.cluster_tls(unix, UpstreamTlsSpec::new().ca(&pki.ca_path));
    let errors = inputs.into_errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("sni"), "{}", errors[0]);
}

#[tokio::test]
async fn reload_serves_new_certificates_to_new_handshakes_and_keeps_old_connections() {
    let pki = Pki::new("t");
    let first = pki.issue(
        "server",
        Names {
            cn: "first",
            dns: &["proxy.test"],
            not_after: Some((2090, 1, 1)),
            ..Names::default()
        },
    );
    let tls = load(
        ServerTlsSpec::new(CertificateSpec::new(&first.cert, &first.key))
            .reload_interval(Some(Duration::from_millis(50))),
    );
    let days = |(y, m, d): (i32, u8, u8)| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (rcgen::date_time_ymd(y, m, d).unix_timestamp() - now).div_euclid(86_400)
    };
    assert_eq!(tls.days_until_first_cert_expiring(), days((2090, 1, 1)));
    let (server, address) = proxy(Some(Arc::clone(&tls)), None);
    assert_eq!(
        server.days_until_first_cert_expiring(),
        Some(days((2090, 1, 1)))
    );
    let setup = ClientSetup::new(&pki);

    let old = within("handshake", setup.connect(address, "proxy.test"))
        .await
        .unwrap();
    assert!(presented(&old) == first.der);
    let mut old = Client::http1(old).await;
    assert_eq!(
        within("request", old.get("/whoami")).await.unwrap().status,
        StatusCode::OK
    );

    // Rotate: same file names, new certificate and key (each renamed into place).
    let second = pki.issue(
        "server",
        Names {
            cn: "second",
            dns: &["proxy.test"],
            not_after: Some((2080, 6, 1)),
            ..Names::default()
        },
    );
    // Between the two renames a reload may see a mismatched pair; it is refused and the
    // next change (the key) is picked up.
    eventually("new certificate loaded", || {
        tls.days_until_first_cert_expiring() == days((2080, 6, 1))
    })
    .await;
    let new = within("handshake", setup.connect(address, "proxy.test"))
        .await
        .unwrap();
    assert!(
        presented(&new) == second.der,
        "the new certificate was not presented"
    );
    // The connection from before the reload still serves requests.
    assert_eq!(
        within("request", old.get("/whoami")).await.unwrap().status,
        StatusCode::OK
    );

    // A broken file is refused; the last good certificate stays in use.
    let errors_before = tls.reload_errors();
    write_atomically(&second.cert, b"-----BEGIN CERTIFICATE-----\ntruncated");
    eventually("bad reload refused", || tls.reload_errors() > errors_before).await;
    let after = within("handshake", setup.connect(address, "proxy.test"))
        .await
        .unwrap();
    assert!(presented(&after) == second.der);
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_without_blocking_others() {
    let pki = Pki::new("t");
    let leaf = pki.server();
    let spec = ServerTlsSpec::new(CertificateSpec::new(&leaf.cert, &leaf.key))
        .handshake_timeout(Duration::from_millis(300));
    let (server, address) = proxy(Some(load(spec)), None);

    let started = Instant::now();
    let mut silent = TcpStream::connect(address).await.unwrap();
    // Meanwhile, other clients are served: the handshake is not on the accept loop.
    let reply = get_once(&ClientSetup::new(&pki), address, "proxy.test", "/whoami").await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut buf = [0; 16];
    let read = within("silent client closed", silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let stats = Arc::clone(&server.tls_stats()[0].1);
    eventually("timeout counted", || {
        stats.fail_handshake_timeout.get() == 1
    })
    .await;
    assert_eq!(stats.connection_error.get(), 1);
    server.shutdown().await;
}

// ----- tests: origination -------------------------------------------------------------

#[tokio::test]
async fn upstream_tls_over_tcp_and_unix_sockets_with_alpn_per_protocol() {
    let pki = Pki::new("t");
    let origin_leaf = pki.issue(
        "origin",
        Names {
            cn: "origin",
            dns: &["origin.test", "127.0.0.1"],
            ..Names::default()
        },
    );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_address = tcp.local_addr().unwrap();
    tls_origin(OriginListener::Tcp(tcp), origin_config(&origin_leaf, None));
    let socket = pki.path("origin.sock");
    tls_origin(
        OriginListener::Unix(UnixListener::bind(&socket).unwrap()),
        origin_config(&origin_leaf, None),
    );

    // TCP, no `sni`: the endpoint's IP is verified against the certificate's IP SAN.
    let over_tcp = cluster(
        "tcp",
        EndpointAddress::Tcp(tcp_address),
        UpstreamProtocol::Http1,
        UpstreamTlsSpec::new().ca(&pki.ca_path),
    );
    let reply = through_proxy(&over_tcp).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        "origin version=HTTP/1.1 sni=- xfp=http client=-"
    );
    let stats = over_tcp.tls_stats().unwrap();
    assert_eq!(stats.handshake.get(), 1);

    // A Unix socket with `sni`, speaking HTTP/2 (ALPN h2).
    let over_unix = cluster(
        "unix",
        EndpointAddress::Unix(socket.clone()),
        UpstreamProtocol::Http2,
        UpstreamTlsSpec::new().ca(&pki.ca_path).sni("origin.test"),
    );
    let reply = through_proxy(&over_unix).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        "origin version=HTTP/2.0 sni=origin.test xfp=http client=-"
    );

    // Host-name endpoints resolved through `Inputs` use their host as the server name.
    let mut inputs =
        Inputs::with_lookup(move |_| Some(format!("localhost:{}", tcp_address.port())));
    let endpoint = inputs.endpoint_env("ORIGIN", "unused");
    if endpoint == EndpointAddress::Tcp(tcp_address) {
        // (Only where `localhost` resolves to 127.0.0.1 first.) The origin's certificate
        // does not name `localhost`, so verification fails: proof the host was used.
        let cluster = inputs.cluster_tls(
            Cluster::new("named", vec![endpoint], ClusterOptions::DEFAULT),
            UpstreamTlsSpec::new().ca(&pki.ca_path),
        );
        assert!(inputs.errors().is_empty(), "{:?}", inputs.errors());
        let cluster = Arc::new(cluster);
        let reply = through_proxy(&cluster).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert_eq!(cluster.tls_stats().unwrap().fail_verify_error.get(), 1);
    }
}

#[tokio::test]
async fn an_origin_signed_by_an_unknown_ca_is_502_uf() {
    let pki = Pki::new("t");
    let elsewhere = Pki::new("elsewhere");
    let origin_leaf = elsewhere.issue(
        "origin",
        Names {
            cn: "origin",
            dns: &["origin.test"],
            ..Names::default()
        },
    );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_address = tcp.local_addr().unwrap();
    tls_origin(OriginListener::Tcp(tcp), origin_config(&origin_leaf, None));

    let upstream = cluster(
        "origin",
        EndpointAddress::Tcp(tcp_address),
        UpstreamProtocol::Http1,
        UpstreamTlsSpec::new().ca(&pki.ca_path).sni("origin.test"),
    );
    let reply = through_proxy(&upstream).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.headers["x-proxy-response-flags"], "UF");
    let tls_stats = upstream.tls_stats().unwrap();
    assert_eq!(tls_stats.fail_verify_error.get(), 1);
    assert_eq!(tls_stats.handshake.get(), 0);
    assert_eq!(upstream.stats().upstream_cx_connect_fail.get(), 1);

    // Mozilla's roots do not know a test CA either.
    let public = cluster(
        "public",
        EndpointAddress::Tcp(tcp_address),
        UpstreamProtocol::Http1,
        UpstreamTlsSpec::new().sni("origin.test"),
    );
    let reply = through_proxy(&public).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.headers["x-proxy-response-flags"], "UF");
}

#[tokio::test]
async fn upstream_mtls_presents_the_client_certificate() {
    let pki = Pki::new("t");
    let origin_leaf = pki.issue(
        "origin",
        Names {
            cn: "origin",
            dns: &["origin.test"],
            ..Names::default()
        },
    );
    let proxy_identity = pki.issue(
        "proxy-client",
        Names {
            cn: "edge-proxy",
            ..Names::default()
        },
    );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_address = tcp.local_addr().unwrap();
    tls_origin(
        OriginListener::Tcp(tcp),
        origin_config(&origin_leaf, Some(&pki)),
    );

    let with_cert = cluster(
        "mtls",
        EndpointAddress::Tcp(tcp_address),
        UpstreamProtocol::Http1,
        UpstreamTlsSpec::new()
            .ca(&pki.ca_path)
            .sni("origin.test")
            .client_cert(&proxy_identity.cert, &proxy_identity.key),
    );
    let reply = through_proxy(&with_cert).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply.body.ends_with("client=CN=edge-proxy,O=Proxy Tests"),
        "{}",
        reply.body
    );
    assert!(
        with_cert
            .tls_settings()
            .unwrap()
            .days_until_first_cert_expiring()
            .is_some()
    );

    // Without one the origin refuses. Under TLS 1.3 that alert arrives after the
    // client's side of the handshake, with the request: 502 either way.
    let without = cluster(
        "plain",
        EndpointAddress::Tcp(tcp_address),
        UpstreamProtocol::Http1,
        UpstreamTlsSpec::new().ca(&pki.ca_path).sni("origin.test"),
    );
    let reply = through_proxy(&without).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}

// ----- real clients -------------------------------------------------------------------

fn require(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok()
        || Command::new(tool).arg("version").output().is_ok();
    assert!(
        found,
        "`{tool}` is required by this test and was not found: install it with `sudo apt-get install {package}`"
    );
}

/// Runs `command` off the runtime (the proxy under test is on it) and returns its
/// status, stdout and stderr.
async fn run(mut command: Command) -> (std::process::ExitStatus, String, String) {
    let output = within(
        "external command",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .unwrap()
    .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_openssl_complete_handshakes() {
    require("curl", "curl");
    require("openssl", "openssl");
    let pki = Pki::new("t");
    let default = pki.issue(
        "default",
        Names {
            cn: "default",
            dns: &["proxy.test"],
            ..Names::default()
        },
    );
    let api = pki.issue(
        "api",
        Names {
            cn: "api",
            dns: &["api.example.com"],
            ..Names::default()
        },
    );
    let spec = ServerTlsSpec::new(CertificateSpec::new(&default.cert, &default.key))
        .certificate(CertificateSpec::new(&api.cert, &api.key));
    let (server, address) = proxy(Some(load(spec)), None);
    let port = address.port();

    for (flag, version, alpn) in [
        ("--http1.1", "HTTP/1.1", "http/1.1"),
        ("--http2", "HTTP/2", "h2"),
    ] {
        let mut curl = Command::new("curl");
        curl.args(["--silent", "--show-error", "--max-time", "10", flag])
            .arg("--cacert")
            .arg(&pki.ca_path)
            .args(["--resolve", &format!("api.example.com:{port}:127.0.0.1")])
            .args(["--write-out", "\n%{http_version}"])
            .arg(format!("https://api.example.com:{port}/whoami"));
        let (status, stdout, stderr) = run(curl).await;
        assert!(status.success(), "curl {flag}: {stderr}");
        let expected_version = version.trim_start_matches("HTTP/");
        assert_eq!(
            stdout,
            format!("version=TLSv1.3 alpn={alpn} sni=api.example.com client=-\n{expected_version}"),
            "curl {flag}"
        );
    }

    let mut s_client = Command::new("openssl");
    s_client
        .args(["s_client", "-connect", &address.to_string()])
        .args([
            "-servername",
            "api.example.com",
            "-verify_return_error",
            "-brief",
        ])
        .args(["-tls1_2", "-alpn", "http/1.1"])
        .arg("-CAfile")
        .arg(&pki.ca_path)
        .stdin(std::process::Stdio::null());
    let (status, stdout, stderr) = run(s_client).await;
    let output = format!("{stdout}{stderr}");
    assert!(status.success(), "openssl s_client: {output}");
    assert!(output.contains("Protocol version: TLSv1.2"), "{output}");
    assert!(output.contains("Verification: OK"), "{output}");
    assert!(
        output.contains("CN = api") || output.contains("CN=api"),
        "{output}"
    );
    let stats = Arc::clone(&server.tls_stats()[0].1);
    eventually("three handshakes", || stats.handshake.get() == 3).await;
    assert_eq!(stats.versions_tls1_2.get(), 1);
    server.shutdown().await;
}
