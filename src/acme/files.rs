//! The ACME files under `<data dir>/acme/` (directory 0700, files 0600):
//! one account per CA directory URL, and the current certificate chain
//! with its key. Writes go to a temporary file and are renamed into place.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::domain::UnixMillis;

#[derive(Clone, Debug)]
pub struct AcmeFiles {
    dir: PathBuf,
}

impl AcmeFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The issued chain (leaf first), PEM.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The certificate's private key, PEM.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The account credentials for `directory`: switching CAs (staging to
    /// production) keeps each CA's account.
    pub fn account(&self, directory: &str) -> PathBuf {
        let h = blake3::hash(directory.as_bytes());
        self.dir
            .join(format!("account-{}.json", &h.to_hex().as_str()[..16]))
    }

    /// The stored certificate's dates and names, `None` when there is none
    /// or it or its key cannot be used (then a new one is ordered).
    pub fn stored(&self) -> Option<CertInfo> {
        let pem = fs::read(self.cert()).ok()?;
        match self.check(&pem) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(path = %self.dir.display(), error = %e, "stored ACME certificate unusable; ordering a new one");
                None
            }
        }
    }

    fn check(&self, pem: &[u8]) -> Result<CertInfo, String> {
        let info = CertInfo::parse(pem)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_file(self.key()).map_err(|e| format!("key: {e}"))?;
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("key: {e}"))?;
        CertifiedKey::new(chain, signing)
            .keys_match()
            .map_err(|_| "the key does not belong to the certificate".to_owned())?;
        Ok(info)
    }

    pub fn store_account(&self, directory: &str, json: &[u8]) -> std::io::Result<()> {
        self.ensure_dir()?;
        write_private(&self.account(directory), json)
    }

    /// Key first, so a reload between the two renames finds a mismatched
    /// pair (refused, the old certificate stays) rather than an old key.
    pub fn store_cert(&self, chain_pem: &str, key_pem: &str) -> std::io::Result<()> {
        self.ensure_dir()?;
        write_private(&self.key(), key_pem.as_bytes())?;
        write_private(&self.cert(), chain_pem.as_bytes())
    }

    fn ensure_dir(&self) -> std::io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// What renewal decisions need from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: UnixMillis,
    pub not_after: UnixMillis,
    /// DNS names of the subjectAltName extension, lower-case.
    pub names: Vec<String>,
}

impl CertInfo {
    /// Reads the first (leaf) certificate of a PEM chain.
    pub fn parse(pem: &[u8]) -> Result<Self, String> {
        let leaf = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or("no CERTIFICATE block found")?
            .map_err(|e| e.to_string())?;
        let (_, x) =
            x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| e.to_string())?;
        let v = x.validity();
        let mut names = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        Ok(Self {
            not_before: UnixMillis(v.not_before.timestamp().saturating_mul(1000)),
            not_after: UnixMillis(v.not_after.timestamp().saturating_mul(1000)),
            names,
        })
    }

    /// Whether every configured domain is among the certificate's names.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains
            .iter()
            .all(|d| self.names.contains(&d.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stores_privately_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(dir.path().join("acme"));
        assert!(files.stored().is_none());
        let mut params =
            rcgen::CertificateParams::new(vec!["A.example".into(), "b.example".into()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(2_000_000).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        files.store_cert(&cert.pem(), &key.serialize_pem()).unwrap();
        let info = files.stored().unwrap();
        assert_eq!(info.not_before, UnixMillis(1_000_000_000));
        assert_eq!(info.not_after, UnixMillis(2_000_000_000));
        assert!(info.covers(&["a.example".into(), "B.example".into()]));
        assert!(!info.covers(&["c.example".into()]));
        for p in [files.cert(), files.key()] {
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(
            fs::metadata(files.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_ne!(
            files.account("https://a/dir"),
            files.account("https://b/dir")
        );
        let other = rcgen::KeyPair::generate().unwrap();
        fs::write(files.key(), other.serialize_pem()).unwrap();
        assert!(files.stored().is_none(), "a key of another certificate");
        fs::remove_file(files.key()).unwrap();
        assert!(files.stored().is_none(), "no key");
        fs::write(files.cert(), "junk").unwrap();
        assert!(files.stored().is_none());
    }
}
