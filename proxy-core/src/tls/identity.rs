//! What a completed downstream handshake tells the request path: the negotiated
//! parameters and, under mTLS, the verified client certificate.

use std::fmt::Write as _;

use rustls::ServerConnection;
use rustls_pki_types::CertificateDer;

use super::TlsVersion;
use super::x509;

/// The verified client certificate of a downstream connection (mTLS).
///
/// Built once per handshake, after rustls verified the chain against the listener's
/// `client_ca`; every request on the connection shares it. Filters read it to authorize,
/// and [`xfcc`](Self::xfcc) formats it for `x-forwarded-client-cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    subject: String,
    uris: Vec<String>,
    dns_names: Vec<String>,
    sha256: [u8; 32],
}

impl ClientIdentity {
    /// The identity in the leaf certificate `der`. Subject and SANs are empty if the
    /// certificate cannot be read (rustls accepted it, so in practice it always can); the
    /// hash is always there.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        let mut sha256 = [0; 32];
        sha256.copy_from_slice(digest.as_ref());
        let (subject, uris, dns_names) = match x509::facts(der) {
            Some(facts) => (facts.subject, facts.uris, facts.dns_names),
            None => Default::default(),
        };
        Self {
            subject,
            uris,
            dns_names,
            sha256,
        }
    }

    /// The subject in RFC 4514 form, most specific first (`CN=client,O=Acme,C=US`), as
    /// Envoy prints it.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// URI SANs, e.g. SPIFFE ids (`spiffe://example.org/ns/default/sa/web`).
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// DNS-name SANs.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// SHA-256 of the DER certificate.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// [`sha256`](Self::sha256) as lowercase hex, as Envoy's `Hash=` and
    /// `%DOWNSTREAM_PEER_FINGERPRINT_256%` print it.
    pub fn sha256_hex(&self) -> String {
        let mut hex = String::with_capacity(64);
        for byte in self.sha256 {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }

    /// One element of an Envoy-style `x-forwarded-client-cert` value:
    /// `Hash=<sha256 hex>;Subject="<subject>";URI=<uri>;DNS=<name>`, with one `URI=` per
    /// URI SAN and one `DNS=` per DNS SAN (none when the certificate has none). Values
    /// holding `,` `;` `=` or `"` are quoted, as Envoy does; `Subject` always is.
    pub fn xfcc(&self) -> String {
        let mut out = String::with_capacity(96 + self.subject.len());
        self.write_xfcc(&mut out);
        out
    }

    /// As [`xfcc`](Self::xfcc), appending to `out` (e.g. after a `By=..;` the caller
    /// wrote, or a previous hop's elements and a `,`).
    pub fn write_xfcc(&self, out: &mut String) {
        out.push_str("Hash=");
        out.push_str(&self.sha256_hex());
        out.push_str(";Subject=");
        write_quoted(&self.subject, out);
        for uri in &self.uris {
            out.push_str(";URI=");
            write_value(uri, out);
        }
        for name in &self.dns_names {
            out.push_str(";DNS=");
            write_value(name, out);
        }
    }
}

/// A value, quoted only when it holds a character XFCC gives meaning to.
fn write_value(value: &str, out: &mut String) {
    if value.contains([',', ';', '=', '"']) {
        write_quoted(value, out);
    } else {
        out.push_str(value);
    }
}

fn write_quoted(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The facts of a completed downstream TLS handshake, shared by every request on the
/// connection.
///
/// The accept path builds it once per connection, right after the handshake. Requests
/// currently find it as an `Arc<TlsSession>` in their extensions
/// (`request.extensions().get::<Arc<TlsSession>>()`); a plaintext connection's requests
/// carry none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSession {
    server_name: Option<String>,
    alpn: Option<Vec<u8>>,
    version: Option<TlsVersion>,
    cipher_suite: Option<&'static str>,
    resumed: bool,
    client: Option<ClientIdentity>,
}

impl TlsSession {
    pub(crate) fn new(connection: &ServerConnection) -> Self {
        let client = connection
            .peer_certificates()
            .and_then(<[_]>::first)
            .map(ClientIdentity::from_certificate);
        Self {
            server_name: connection.server_name().map(str::to_owned),
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            version: connection
                .protocol_version()
                .and_then(TlsVersion::from_rustls),
            cipher_suite: connection
                .negotiated_cipher_suite()
                .and_then(|suite| suite.suite().as_str()),
            resumed: connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            client,
        }
    }

    /// The server name the client asked for (SNI), lowercase; `None` when it sent none.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The negotiated ALPN protocol (`h2`, `http/1.1`), if the client offered ALPN.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Option<TlsVersion> {
        self.version
    }

    /// The negotiated cipher suite's IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.cipher_suite
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The verified client certificate, when the client presented one.
    pub fn client(&self) -> Option<&ClientIdentity> {
        self.client.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_quotes_subject_always_and_other_values_when_needed() {
        let identity = ClientIdentity {
            subject: r#"CN=a "b",O=Acme\, Inc."#.to_owned(),
            uris: vec![
                "spiffe://example.org/web".to_owned(),
                "https://x.test/?a=b;c".to_owned(),
            ],
            dns_names: vec!["client.example.org".to_owned()],
            sha256: [0xab; 32],
        };
        assert_eq!(
            identity.xfcc(),
            format!(
                r#"Hash={};Subject="CN=a \"b\",O=Acme\\, Inc.";URI=spiffe://example.org/web;URI="https://x.test/?a=b;c";DNS=client.example.org"#,
                "ab".repeat(32)
            )
        );
        let bare = ClientIdentity {
            subject: String::new(),
            uris: Vec::new(),
            dns_names: Vec::new(),
            sha256: [0; 32],
        };
        assert_eq!(
            bare.xfcc(),
            format!(r#"Hash={};Subject="""#, "0".repeat(64))
        );
    }
}
