//! Reading PEM files into rustls types, with errors that name the file and the problem.
//!
//! Blocking file I/O: called at start-up and from the reload task's blocking thread,
//! never on a runtime worker.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;
use super::x509::{self, CertFacts};

/// No PEM file we read is anywhere near this (a full system CA bundle is ~250 KB); the
/// cap keeps a mistyped path such as `/dev/zero` from eating memory.
const MAX_FILE: u64 = 8 << 20;

/// The bytes of `path`.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::Missing {
            path: path.to_path_buf(),
        },
        _ => TlsError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TlsError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE,
        });
    }
    Ok(bytes)
}

fn pem_error(path: &Path, error: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Every certificate in `path`, in file order; at least one.
pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(path, error))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in `path`.
pub(super) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        error => pem_error(path, error),
    })
}

/// The CA certificates in `path` as trust anchors. Certificates webpki cannot use as an
/// anchor are skipped (system bundles carry a few); a bundle with none usable is an error.
pub(super) fn ca_bundle(path: &Path) -> Result<RootCertStore, TlsError> {
    let certificates = certificates(path)?;
    let total = certificates.len();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(TlsError::BadCaBundle {
            path: path.to_path_buf(),
            reason: format!("none of its {total} certificates is a usable trust anchor"),
        });
    }
    if ignored > 0 {
        tracing::warn!(path = %path.display(), ignored, "skipped unusable CA certificates");
    }
    Ok(roots)
}

/// A certificate chain with its key, checked: the key matches the leaf, and no
/// certificate in the chain has expired.
pub(super) struct LoadedKey {
    pub(super) key: Arc<CertifiedKey>,
    /// Facts of the leaf certificate.
    pub(super) leaf: CertFacts,
    /// The earliest `notAfter` in the chain (Unix seconds).
    pub(super) first_expiry: i64,
}

/// Loads the chain in `cert_path` and the key in `key_path` (which may be the same file).
pub(super) fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
    now: i64,
) -> Result<LoadedKey, TlsError> {
    let chain = certificates(cert_path)?;
    let mut leaf = None;
    let mut first_expiry = i64::MAX;
    for (index, certificate) in chain.iter().enumerate() {
        let position = index + 1;
        let facts = x509::facts(certificate).ok_or_else(|| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            position,
        })?;
        if facts.not_after < now {
            return Err(TlsError::Expired {
                path: cert_path.to_path_buf(),
                position,
                subject: facts.subject,
                not_after: x509::format_time(facts.not_after),
            });
        }
        if facts.not_before > now {
            tracing::warn!(
                path = %cert_path.display(),
                position,
                not_before = %x509::format_time(facts.not_before),
                "certificate is not valid yet; clients will reject it until then"
            );
        }
        first_expiry = first_expiry.min(facts.not_after);
        leaf.get_or_insert(facts);
    }
    let leaf = leaf.ok_or_else(|| TlsError::NoCertificate {
        path: cert_path.to_path_buf(),
    })?;
    let key = private_key(key_path)?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        },
        error => TlsError::BadPrivateKey {
            path: key_path.to_path_buf(),
            reason: error.to_string(),
        },
    })?;
    Ok(LoadedKey {
        key: Arc::new(key),
        leaf,
        first_expiry,
    })
}

/// What a file looked like when it was last read: enough to notice a rewrite in place,
/// a rename over it (a new inode) or a Kubernetes secret's symlink swap (metadata
/// follows symlinks), without reading the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileStamp(Option<(SystemTime, u64, u64, u64)>);

impl FileStamp {
    /// `None` inside when the file cannot be examined (e.g. missing mid-rotation).
    pub(super) fn of(path: &Path) -> Self {
        FileStamp(std::fs::metadata(path).ok().map(|meta| {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            (modified, meta.len(), meta.ino(), meta.dev())
        }))
    }
}
