//! TLS termination: TLS 1.2/1.3 only, ALPN h2 + http/1.1, certificates from
//! operator PEM files (reloadable without dropping connections), from ACME
//! (with `acme-tls/1` challenge handshakes), or a self-signed certificate
//! generated once into the data dir.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::acme::Challenges;
use crate::acme::challenge::ACME_TLS_ALPN;

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
    acme: Option<AcmeSource>,
    current: RwLock<Arc<CertifiedKey>>,
}

/// With ACME, the issued pair once it exists (`files` is the self-signed
/// stand-in until then) and the pending TLS-ALPN-01 challenges.
#[derive(Debug)]
struct AcmeSource {
    issued: CertFiles,
    challenges: Arc<Challenges>,
}

impl CertResolver {
    pub fn new(files: CertFiles) -> Result<Self, TlsError> {
        let ck = load(&files)?;
        Ok(Self {
            files,
            acme: None,
            current: RwLock::new(Arc::new(ck)),
        })
    }

    /// Serves the ACME certificate `issued` when it exists and loads, else
    /// `fallback` (self-signed) until the first issuance reloads.
    pub fn acme(
        issued: CertFiles,
        fallback: CertFiles,
        challenges: Arc<Challenges>,
    ) -> Result<Self, TlsError> {
        let ck = if issued.cert.exists() {
            match load(&issued) {
                Ok(ck) => ck,
                Err(e) => {
                    tracing::warn!(error = %e, "stored ACME certificate unusable; serving the self-signed one until a new one is issued");
                    load(&fallback)?
                }
            }
        } else {
            load(&fallback)?
        };
        Ok(Self {
            files: fallback,
            acme: Some(AcmeSource { issued, challenges }),
            current: RwLock::new(Arc::new(ck)),
        })
    }

    /// Whether `acme-tls/1` handshakes are answered.
    pub fn answers_acme(&self) -> bool {
        self.acme.is_some()
    }

    /// Re-reads the files (the ACME pair when one was issued); on error
    /// the old certificate stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        let files = match &self.acme {
            Some(a) if a.issued.cert.exists() => &a.issued,
            _ => &self.files,
        };
        let ck = Arc::new(load(files)?);
        match self.current.write() {
            Ok(mut g) => *g = ck,
            Err(poisoned) => *poisoned.into_inner() = ck,
        }
        Ok(())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(a) = &self.acme {
            let acme_tls = hello
                .alpn()
                .is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
            if acme_tls {
                // Only the challenge certificate, never the real one, and
                // no handshake at all for a name with no pending challenge.
                return a.challenges.get(hello.server_name()?);
            }
        }
        Some(match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

/// The rustls server configuration sikker uses everywhere.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let acme = resolver.answers_acme();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
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

    /// A handshake over an in-memory pipe; the leaf served, or the error.
    async fn handshake(
        cfg: rustls::ServerConfig,
        sni: &str,
        alpn: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
        #[derive(Debug)]
        struct AnyCert;
        impl rustls::client::danger::ServerCertVerifier for AnyCert {
            fn verify_server_cert(
                &self,
                _: &CertificateDer<'_>,
                _: &[CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
                .accept(b)
                .await
        });
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let r = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, a)
            .await
            .map_err(|e| e.to_string());
        let _ = server.await;
        let s = r?;
        let conn = s.get_ref().1;
        Ok((
            conn.peer_certificates().unwrap()[0].to_vec(),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        ))
    }

    #[tokio::test]
    async fn acme_tls_handshakes_get_only_the_challenge_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let fallback =
            ensure_self_signed(dir.path(), &["a.example".into()], 1_774_000_000).unwrap();
        let issued = CertFiles {
            cert: dir.path().join("acme/cert.pem"),
            key: dir.path().join("acme/key.pem"),
        };
        let challenges = Arc::new(Challenges::default());
        let r = Arc::new(CertResolver::acme(issued, fallback.clone(), challenges.clone()).unwrap());
        let cfg = || server_config(r.clone()).unwrap();
        let self_signed = CertificateDer::from_pem_file(&fallback.cert)
            .unwrap()
            .to_vec();
        // No pending challenge: an acme-tls/1 handshake is refused.
        assert!(handshake(cfg(), "a.example", ACME_TLS_ALPN).await.is_err());
        challenges.insert("a.example", &[1u8; 32]).unwrap();
        let (leaf, alpn) = handshake(cfg(), "a.example", ACME_TLS_ALPN).await.unwrap();
        assert_eq!(alpn.as_deref(), Some(ACME_TLS_ALPN));
        assert_ne!(leaf, self_signed);
        assert_eq!(leaf, challenges.get("a.example").unwrap().cert[0].to_vec());
        // Other names and ordinary clients never see the challenge certificate.
        assert!(handshake(cfg(), "b.example", ACME_TLS_ALPN).await.is_err());
        let (leaf, alpn) = handshake(cfg(), "a.example", b"h2").await.unwrap();
        assert_eq!((leaf, alpn.as_deref()), (self_signed, Some(&b"h2"[..])));
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
