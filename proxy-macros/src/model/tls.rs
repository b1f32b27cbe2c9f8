//! `tls: { .. }` on listeners (termination) and clusters (origination). Files are read at
//! start-up (and watched for changes); what can be checked now is checked here: paths are
//! absolute, names are valid, settings that need each other are both present.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::ToTokens;

use super::fields::Fields;
use super::{Located, value};
use crate::diag::{self, Ctxt};
use crate::symbol::{self, Block};
use crate::syntax::{Call, Value};

/// A file path: a literal, or `env("VAR", "/default")` read at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathValue {
    Literal(String),
    Env { var: String, default: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// One certificate with the server names it answers for (empty: its DNS SANs).
pub struct CertificateDecl {
    pub cert: PathValue,
    pub key: PathValue,
    pub sni: Vec<String>,
}

pub struct ListenerTls {
    pub certificates: Vec<CertificateDecl>,
    pub client_ca: Option<PathValue>,
    pub require_client_cert: bool,
    pub min_version: Option<TlsVersion>,
    pub handshake_timeout: Option<Duration>,
    /// `None`: the default; `Some(None)`: watching turned off with `none`.
    pub reload_interval: Option<Option<Duration>>,
    pub tokens: TokenStream,
}

pub struct ClusterTls {
    pub sni: Option<Located<String>>,
    pub ca: Option<PathValue>,
    pub client_cert: Option<(PathValue, PathValue)>,
    pub min_version: Option<TlsVersion>,
    pub tokens: TokenStream,
}

fn settings<'a>(cx: &Ctxt, value: &'a Value) -> Option<&'a crate::syntax::Settings> {
    match value {
        Value::Block(settings) => Some(settings),
        other => {
            value::mismatch(cx, other, "a `{ .. }` block of TLS settings");
            None
        }
    }
}

impl ListenerTls {
    pub(crate) fn build(cx: &Ctxt, value: &Value) -> Option<ListenerTls> {
        let block = settings(cx, value)?;
        let mut fields = Fields::new(Block::ListenerTls);
        let mut tls = ListenerTls {
            certificates: Vec::new(),
            client_ca: None,
            require_client_cert: false,
            min_version: None,
            handshake_timeout: None,
            reload_interval: None,
            tokens: value.to_token_stream(),
        };
        let (mut cert, mut key, mut sni) = (None, None, Vec::new());
        let mut extra = Vec::new();
        let mut complete = true;
        let mut require_token = None;
        for entry in &block.fields {
            let Some((name, value)) = fields.entry(cx, entry) else {
                complete = false;
                continue;
            };
            let ok = if name == symbol::CERT {
                cert = path(cx, value);
                cert.is_some()
            } else if name == symbol::KEY {
                key = path(cx, value);
                key.is_some()
            } else if name == symbol::SNI {
                names(cx, value).map(|names| sni = names).is_some()
            } else if name == symbol::CERTIFICATES {
                match certificates(cx, value) {
                    Some(list) => {
                        extra = list;
                        true
                    }
                    None => false,
                }
            } else if name == symbol::CLIENT_CA {
                tls.client_ca = path(cx, value);
                tls.client_ca.is_some()
            } else if name == symbol::REQUIRE_CLIENT_CERT {
                require_token = Some(value.to_token_stream());
                value::boolean(cx, value)
                    .map(|b| tls.require_client_cert = b)
                    .is_some()
            } else if name == symbol::MIN_VERSION {
                tls.min_version = version(cx, value);
                tls.min_version.is_some()
            } else if name == symbol::HANDSHAKE_TIMEOUT {
                tls.handshake_timeout = value::duration(cx, value);
                tls.handshake_timeout.is_some()
            } else {
                value::optional_duration(cx, value)
                    .map(|interval| tls.reload_interval = Some(interval))
                    .is_some()
            };
            complete &= ok;
        }
        if !complete {
            return None;
        }
        let (Some(cert), Some(key)) = (cert, key) else {
            cx.error_spanned_by(
                value,
                diag::with_help(
                    "`tls` needs the default certificate's `cert` and `key`",
                    r#"add cert: "/etc/proxy/tls.crt", key: "/etc/proxy/tls.key""#,
                ),
            );
            return None;
        };
        if tls.require_client_cert && tls.client_ca.is_none() {
            cx.error_spanned_by(
                require_token.unwrap_or_else(|| value.to_token_stream()),
                diag::with_help(
                    "`require_client_cert` needs `client_ca` to verify clients against",
                    r#"add client_ca: "/etc/proxy/clients-ca.pem""#,
                ),
            );
            return None;
        }
        tls.certificates.push(CertificateDecl { cert, key, sni });
        tls.certificates.extend(extra);
        Some(tls)
    }
}

impl ClusterTls {
    pub(crate) fn build(cx: &Ctxt, value: &Value) -> Option<ClusterTls> {
        let block = settings(cx, value)?;
        let mut fields = Fields::new(Block::ClusterTls);
        let mut tls = ClusterTls {
            sni: None,
            ca: None,
            client_cert: None,
            min_version: None,
            tokens: value.to_token_stream(),
        };
        let (mut cert, mut key) = (None, None);
        let mut complete = true;
        for entry in &block.fields {
            let Some((name, value)) = fields.entry(cx, entry) else {
                complete = false;
                continue;
            };
            let ok = if name == symbol::SNI {
                match value::string(cx, value) {
                    Some(lit) if server_name(cx, lit) => {
                        tls.sni = Some(Located::new(lit.value(), lit));
                        true
                    }
                    _ => false,
                }
            } else if name == symbol::CA {
                tls.ca = path(cx, value);
                tls.ca.is_some()
            } else if name == symbol::CLIENT_CERT {
                cert = path(cx, value).map(|p| (p, value.to_token_stream()));
                cert.is_some()
            } else if name == symbol::CLIENT_KEY {
                key = path(cx, value).map(|p| (p, value.to_token_stream()));
                key.is_some()
            } else {
                tls.min_version = version(cx, value);
                tls.min_version.is_some()
            };
            complete &= ok;
        }
        match (cert, key) {
            (Some((cert, _)), Some((key, _))) => tls.client_cert = Some((cert, key)),
            (Some((_, tokens)), None) => {
                cx.error_spanned_by(
                    tokens,
                    diag::with_help(
                        "`client_cert` needs `client_key`",
                        "add the private key's path",
                    ),
                );
                complete = false;
            }
            (None, Some((_, tokens))) => {
                cx.error_spanned_by(
                    tokens,
                    diag::with_help(
                        "`client_key` needs `client_cert`",
                        "add the certificate's path",
                    ),
                );
                complete = false;
            }
            (None, None) => {}
        }
        complete.then_some(tls)
    }
}

/// An absolute path literal or `env("VAR", "/abs/default")`.
fn path(cx: &Ctxt, value: &Value) -> Option<PathValue> {
    let absolute = |cx: &Ctxt, lit: &syn::LitStr| {
        let text = lit.value();
        if text.starts_with('/') {
            Some(text)
        } else {
            cx.error_spanned_by(
                lit,
                diag::with_help(
                    format!("path `{text}` is not absolute"),
                    format!("write \"/{text}\""),
                ),
            );
            None
        }
    };
    match value {
        Value::Str(lit) => absolute(cx, lit).map(PathValue::Literal),
        Value::Call(call) if call.name == symbol::ENV => {
            let [var, default] =
                value::args::<2>(cx, call, r#"env("TLS_CERT", "/etc/proxy/tls.crt")"#)?;
            let var = value::string(cx, var)?.value();
            let default = absolute(cx, value::string(cx, default)?)?;
            Some(PathValue::Env { var, default })
        }
        other => {
            value::mismatch(
                cx,
                other,
                r#"a file path: "/abs/path" or env("VAR", "/abs/path")"#,
            );
            None
        }
    }
}

fn version(cx: &Ctxt, value: &Value) -> Option<TlsVersion> {
    let lit = value::string(cx, value)?;
    match lit.value().as_str() {
        "1.2" => Some(TlsVersion::Tls12),
        "1.3" => Some(TlsVersion::Tls13),
        other => {
            cx.error_spanned_by(
                lit,
                diag::with_help(
                    format!("unsupported TLS version `{other}`"),
                    r#"write "1.2" or "1.3""#,
                ),
            );
            None
        }
    }
}

/// A DNS name or `*.suffix` wildcard, lowercased.
fn server_name(cx: &Ctxt, lit: &syn::LitStr) -> bool {
    let text = lit.value();
    let name = text.strip_prefix("*.").unwrap_or(&text);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        cx.error_spanned_by(
            lit,
            diag::with_help(
                format!("invalid server name `{text}`"),
                r#"write a DNS name such as "api.example.org" or "*.example.org""#,
            ),
        );
    }
    valid
}

fn names(cx: &Ctxt, value: &Value) -> Option<Vec<String>> {
    let list = value::list(cx, value)?;
    let mut names: Vec<(String, &syn::LitStr)> = Vec::new();
    for item in &list.items {
        let lit = value::string(cx, item)?;
        if !server_name(cx, lit) {
            return None;
        }
        let name = lit.value().to_ascii_lowercase();
        if let Some((_, first)) = names.iter().find(|(known, _)| *known == name) {
            cx.push(diag::duplicate(
                lit,
                *first,
                format!("server name `{name}` is listed twice"),
                &name,
            ));
            return None;
        }
        names.push((name, lit));
    }
    Some(names.into_iter().map(|(name, _)| name).collect())
}

/// `certificates: [certificate("/cert", "/key", ["sni", ..]), ..]`.
fn certificates(cx: &Ctxt, value: &Value) -> Option<Vec<CertificateDecl>> {
    let list = value::list(cx, value)?;
    let usage = r#"certificate("/etc/proxy/api.crt", "/etc/proxy/api.key", ["api.example.org"])"#;
    let mut certificates = Vec::new();
    for item in &list.items {
        let Value::Call(call) = item else {
            value::mismatch(cx, item, usage);
            return None;
        };
        certificates.push(certificate(cx, call, usage)?);
    }
    Some(certificates)
}

fn certificate(cx: &Ctxt, call: &Call, usage: &str) -> Option<CertificateDecl> {
    if call.name != symbol::CERTIFICATE {
        cx.error_spanned_by(
            &call.name,
            diag::with_help(
                format!("expected `certificate(..)`, found `{}(..)`", call.name),
                usage,
            ),
        );
        return None;
    }
    let [cert, key, sni] = value::args::<3>(cx, call, usage)?;
    Some(CertificateDecl {
        cert: path(cx, cert)?,
        key: path(cx, key)?,
        sni: names(cx, sni)?,
    })
}
