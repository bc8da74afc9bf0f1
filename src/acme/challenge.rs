//! TLS-ALPN-01 challenge certificates (RFC 8737): while a validation is
//! pending, a handshake offering only `acme-tls/1` for the name gets a
//! self-signed certificate carrying the key authorization's digest.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// The ALPN protocol name of TLS-ALPN-01.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Challenge certificates by (lower-case) domain.
#[derive(Debug, Default)]
pub struct Challenges {
    certs: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// Makes and installs the challenge certificate for `domain`.
    pub fn insert(&self, domain: &str, digest: &[u8]) -> Result<(), String> {
        let ck = challenge_cert(domain, digest)?;
        let mut g = match self.certs.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.insert(domain.to_ascii_lowercase(), Arc::new(ck));
        Ok(())
    }

    pub fn remove(&self, domain: &str) {
        let mut g = match self.certs.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.remove(&domain.to_ascii_lowercase());
    }

    /// The certificate for an `acme-tls/1` handshake naming `sni`.
    pub fn get(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let g = match self.certs.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.get(&sni.to_ascii_lowercase()).cloned()
    }
}

fn challenge_cert(domain: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der: CertificateDer<'static> = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![der], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_certs_carry_the_digest_and_go_away() {
        let c = Challenges::default();
        let digest = [7u8; 32];
        c.insert("Sikker.Example", &digest).unwrap();
        let ck = c.get("sikker.example").unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(ck.cert[0].as_ref()).unwrap();
        let ext = x
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // DER OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        c.remove("sikker.example");
        assert!(c.get("sikker.example").is_none());
    }
}
