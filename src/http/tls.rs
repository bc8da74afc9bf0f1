//! TLS termination: TLS 1.2/1.3 only, ALPN h2 + http/1.1, certificates from
//! operator PEM files (reloadable without dropping connections) or a
//! self-signed certificate generated once into the data dir.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {path} (--tls-cert / SIKKER_TLS_CERT): {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read private key {path} (--tls-key / SIKKER_TLS_KEY): {reason}")]
    Key { path: String, reason: String },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    Mismatch { cert: String, key: String },
    #[error("cannot create the self-signed certificate in {dir}: {reason}")]
    SelfSigned { dir: String, reason: String },
}

/// Where the certificate comes from.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its key.
pub fn load(files: &CertFiles) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: files.cert.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: files.key.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| key_err(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|_| TlsError::Mismatch {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
    })?;
    Ok(ck)
}

/// Serves the current certificate; `reload` swaps it for new handshakes
/// while established connections carry on.
#[derive(Debug)]
pub struct CertResolver {
    files: CertFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    pub fn new(files: CertFiles) -> Result<Self, TlsError> {
        let ck = load(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(ck)),
        })
    }

    /// Re-reads the files; on error the old certificate stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = Arc::new(load(&self.files)?);
        match self.current.write() {
            Ok(mut g) => *g = ck,
            Err(poisoned) => *poisoned.into_inner() = ck,
        }
        Ok(())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

/// The rustls server configuration sikker uses everywhere.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The self-signed pair under `<data dir>/tls/`, generated on first use for
/// `localhost`, the loopback addresses and `extra_names`.
pub fn ensure_self_signed(
    tls_dir: &Path,
    extra_names: &[String],
    now_secs: i64,
) -> Result<CertFiles, TlsError> {
    let files = CertFiles {
        cert: tls_dir.join("self-signed.crt"),
        key: tls_dir.join("self-signed.key"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let fail = |reason: String| TlsError::SelfSigned {
        dir: tls_dir.display().to_string(),
        reason,
    };
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(tls_dir)
        .map_err(|e| fail(e.to_string()))?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for n in extra_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| fail(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sikker self-signed");
    let start = time::OffsetDateTime::from_unix_timestamp(now_secs - 86_400)
        .map_err(|e| fail(e.to_string()))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(3650);
    let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
    write_private(&files.key, key.serialize_pem().as_bytes()).map_err(|e| fail(e.to_string()))?;
    fs::write(&files.cert, cert.pem()).map_err(|e| fail(e.to_string()))?;
    Ok(files)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_signed_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let f = ensure_self_signed(dir.path(), &["sikker.test".into()], 1_774_000_000).unwrap();
        let first = fs::read(&f.cert).unwrap();
        let again = ensure_self_signed(dir.path(), &[], 1_774_000_000).unwrap();
        assert_eq!(first, fs::read(&again.cert).unwrap());
        let r = CertResolver::new(f.clone()).unwrap();
        r.reload().unwrap();
        assert_eq!(
            fs::metadata(&f.key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = ensure_self_signed(dir.path(), &[], 1_774_000_000).unwrap();
        let other = tempfile::tempdir().unwrap();
        let g = ensure_self_signed(other.path(), &[], 1_774_000_000).unwrap();
        let mixed = CertFiles {
            cert: f.cert.clone(),
            key: g.key.clone(),
        };
        assert!(matches!(load(&mixed), Err(TlsError::Mismatch { .. })));
        let junk = dir.path().join("junk.pem");
        fs::write(&junk, "not pem").unwrap();
        let e = load(&CertFiles {
            cert: junk.clone(),
            key: f.key.clone(),
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("junk.pem") && e.to_string().contains("SIKKER_TLS_CERT"),
            "{e}"
        );
        let e = load(&CertFiles {
            cert: f.cert.clone(),
            key: junk,
        })
        .unwrap_err();
        assert!(e.to_string().contains("SIKKER_TLS_KEY"), "{e}");
    }
}
