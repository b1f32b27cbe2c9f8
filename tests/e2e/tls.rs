//! TLS through a DSL-built proxy with real peers: curl as the client (CA verification,
//! ALPN h2, a client certificate → `x-forwarded-client-cert`), nginx as a plaintext origin
//! and as a TLS origin the proxy verifies by SNI against its own CA. Certificates are
//! generated here, per test, never committed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic with its error

use std::path::{Path, PathBuf};

use proxy_tests::{Nginx, ProxyCommand, curl, tempdir};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

/// A CA that issues certificates into a directory.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// `(certificate, key)` PEM paths for a certificate with these DNS/IP names.
    fn issue(&self, dir: &Path, file: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn terminates_and_originates_tls_with_client_certificates() {
    let dir = tempdir();
    let d = dir.path();
    let edge_ca = Ca::new(d, "edge");
    let (cert, key) = edge_ca.issue(d, "edge", "localhost", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = edge_ca.issue(d, "client", "web-client", &["client.test"]);
    let origin_ca = Ca::new(d, "origin");
    let (origin_cert, origin_key) = origin_ca.issue(d, "origin", "origin.test", &["origin.test"]);

    let echo = |origin: &str| {
        format!(
            r#"location / {{ default_type text/plain; return 200 "{origin} $scheme xfp=$http_x_forwarded_proto xfcc=$http_x_forwarded_client_cert\n"; }}"#
        )
    };
    let tls_body = format!(
        "ssl_certificate {}; ssl_certificate_key {}; {}",
        origin_cert.display(),
        origin_key.display(),
        echo("tls-origin")
    );
    let nginx = Nginx::builder(d)
        .tcp("plain", &echo("plain-origin"))
        .tls("secure", &tls_body)
        .start();
    let mut proxy = ProxyCommand::new(env!("CARGO_BIN_EXE_tls_fixture"), d)
        .env("TLS_CERT", &cert)
        .env("TLS_KEY", &key)
        .env("CLIENT_CA", &edge_ca.pem)
        .env("ORIGIN_CA", &origin_ca.pem)
        .env("ORIGIN_ADDR", nginx.addr("plain").to_string())
        .env("TLS_ORIGIN_ADDR", nginx.addr("secure").to_string())
        .spawn();
    let port = proxy.tcp_listener("secure").port();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca = edge_ca.pem.display().to_string();

    // Verified against the edge CA; HTTP/2 by ALPN; the origin sees https, no XFCC.
    let out = curl([
        "--http2",
        "--resolve",
        &resolve,
        "--cacert",
        &ca,
        "-w",
        "%{http_version}",
        &url("/x"),
    ]);
    assert_eq!(
        text(&out.stdout),
        "plain-origin http xfp=https xfcc=\n2",
        "{}",
        proxy.stderr()
    );

    // A client certificate (optional here) becomes the verified x-forwarded-client-cert;
    // one the client sends itself is dropped.
    let cc = client_cert.display().to_string();
    let ck = client_key.display().to_string();
    let out = curl([
        "--http1.1",
        "--resolve",
        &resolve,
        "--cacert",
        &ca,
        "--cert",
        &cc,
        "--key",
        &ck,
        "-H",
        "x-forwarded-client-cert: forged",
        &url("/x"),
    ]);
    let body = text(&out.stdout);
    assert!(
        body.starts_with("plain-origin http xfp=https xfcc=Hash="),
        "{body}\n{}",
        out.stderr
    );
    assert!(body.contains(r#"Subject="CN=web-client""#), "{body}");
    assert!(body.contains("DNS=client.test"), "{body}");
    assert!(!body.contains("forged"), "{body}");

    // Without the CA, curl refuses the proxy's certificate.
    let out = curl(["--resolve", &resolve, &url("/x")]);
    assert_ne!(out.code, 0, "curl accepted an unverified certificate");

    // TLS to the origin, verified by SNI `origin.test` against the origin CA.
    let out = curl(["--resolve", &resolve, "--cacert", &ca, &url("/via-tls/y")]);
    assert_eq!(
        text(&out.stdout),
        "tls-origin https xfp=https xfcc=\n",
        "{}\n{}",
        out.stderr,
        proxy.stderr()
    );

    // h2load over TLS (ALPN h2): many streams on a few connections, all answered.
    let h2load = proxy_tests::require_tool("h2load", "nghttp2-client");
    let out = std::process::Command::new(h2load)
        .args([
            "-n",
            "400",
            "-c",
            "4",
            "-m",
            "16",
            &format!("https://127.0.0.1:{port}/x"),
        ])
        .output()
        .unwrap();
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "h2load failed:\n{report}\n{}",
        text(&out.stderr)
    );
    assert!(report.contains("Application protocol: h2"), "{report}");
    assert!(
        report.contains("400 succeeded, 0 failed, 0 errored"),
        "{report}"
    );
    assert!(report.contains("status codes: 400 2xx"), "{report}");

    // openssl s_client against the listener that requires client certificates and TLS 1.3:
    // with the certificate the handshake and a request succeed, without it they fail, and
    // TLS 1.2 is refused.
    let mtls = proxy.tcp_listener("mtls");
    let s_client = |extra: &[&str]| {
        let openssl = proxy_tests::require_tool("openssl", "openssl");
        let mut child = std::process::Command::new(openssl)
            .args([
                "s_client",
                "-connect",
                &mtls.to_string(),
                "-servername",
                "localhost",
                "-CAfile",
                &ca,
                "-quiet",
            ])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let request = b"GET /m HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let _ = child.stdin.take().unwrap().write_all(request);
        let out = child.wait_with_output().unwrap();
        (text(&out.stdout), text(&out.stderr))
    };
    let (stdout, stderr) = s_client(&["-cert", &cc, "-key", &ck]);
    assert!(stdout.starts_with("HTTP/1.1 200 OK"), "{stdout}\n{stderr}");
    assert!(stdout.contains("xfcc=Hash="), "{stdout}");
    let (stdout, stderr) = s_client(&[]);
    assert!(
        !stdout.contains("200 OK"),
        "served without a client certificate: {stdout}\n{stderr}"
    );
    let (stdout, stderr) = s_client(&["-cert", &cc, "-key", &ck, "-tls1_2"]);
    assert!(
        !stdout.contains("200 OK"),
        "TLS 1.2 was accepted: {stdout}\n{stderr}"
    );

    let status = proxy.terminate();
    assert!(status.success(), "{status:?}\n{}", proxy.stderr());
}

#[test]
fn a_missing_certificate_stops_start_up_naming_the_file() {
    let dir = tempdir();
    let missing = dir.path().join("absent.pem");
    let run = ProxyCommand::new(env!("CARGO_BIN_EXE_tls_fixture"), dir.path())
        .env("TLS_CERT", &missing)
        .env("TLS_KEY", dir.path().join("absent.key"))
        .env("CLIENT_CA", dir.path().join("absent-ca.pem"))
        .env("ORIGIN_CA", dir.path().join("absent-origin-ca.pem"))
        .run();
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{}",
        run.stderr
    );
}
