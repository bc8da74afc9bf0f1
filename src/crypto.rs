//! Secrets in one place: random tokens, the server's keyed-hash secret,
//! keyed blake3 hashes for stored tokens, argon2id parameters, and
//! constant-time comparison.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0_u8; N];
    // The OS RNG failing is unrecoverable for a security appliance.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("operating system random number generator failed");
    buf
}

/// A URL-safe random token with 256 bits of entropy (64 hex characters).
pub fn random_token() -> String {
    hex::encode(random_bytes::<32>())
}

/// The server-wide secret behind every keyed hash (API keys, sensor tokens,
/// refresh tokens, bootstrap token). Kept in the data dir with mode 0600.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// Loads the key file, or creates it (0600) when absent.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match fs::read(path) {
            Ok(bytes) => {
                let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} must hold exactly 32 bytes", path.display()),
                    )
                })?;
                Ok(Self(arr))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>();
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
                Ok(Self(key))
            }
            Err(e) => Err(e),
        }
    }

    /// Keyed blake3 of `purpose` and `data`; the purpose separates domains
    /// so an API key hash can never be confused with a session hash.
    pub fn keyed_hash(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(purpose.as_bytes());
        h.update(&[0]);
        h.update(data);
        *h.finalize().as_bytes()
    }
}

impl SecretKey {
    /// A URL-safe token carrying `payload`, authenticated for `purpose`
    /// (e-mail verification and password-reset links). Nothing is stored:
    /// the payload binds the token to the state it may change.
    pub fn sign_token(&self, purpose: &str, payload: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mac = self.keyed_hash(purpose, payload);
        format!("{}.{}", b64.encode(payload), b64.encode(&mac[..20]))
    }

    /// The payload of a token made by `sign_token` for `purpose`.
    pub fn open_token(&self, purpose: &str, token: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if token.len() > 2048 {
            return None;
        }
        let (p, m) = token.trim().split_once('.')?;
        let payload = b64.decode(p).ok()?;
        let mac = b64.decode(m).ok()?;
        let want = self.keyed_hash(purpose, &payload);
        ct_eq(&mac, &want[..20]).then_some(payload)
    }
}

/// Constant-time equality for secrets of equal length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// argon2id with OWASP's recommended minimum (m = 19 MiB, t = 2, p = 1);
/// defined once so no call site can weaken it.
fn argon2() -> argon2::Argon2<'static> {
    #[allow(clippy::expect_used)]
    let params =
        argon2::Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// PHC string of an argon2id hash with a fresh per-password salt.
pub fn hash_password(password: &str) -> String {
    let salt_bytes = random_bytes::<16>();
    #[allow(clippy::expect_used)]
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    #[allow(clippy::expect_used)]
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_depends_on_key_and_purpose() {
        let a = SecretKey::from_bytes([1; 32]);
        let b = SecretKey::from_bytes([2; 32]);
        assert_ne!(a.keyed_hash("k", b"x"), b.keyed_hash("k", b"x"));
        assert_ne!(a.keyed_hash("k", b"x"), a.keyed_hash("j", b"x"));
        assert_eq!(a.keyed_hash("k", b"x"), a.keyed_hash("k", b"x"));
    }

    #[test]
    fn signed_tokens_bind_purpose_and_payload() {
        let k = SecretKey::from_bytes([5; 32]);
        let t = k.sign_token("verify", b"account 7");
        assert_eq!(k.open_token("verify", &t).unwrap(), b"account 7");
        assert!(k.open_token("reset", &t).is_none());
        assert!(
            SecretKey::from_bytes([6; 32])
                .open_token("verify", &t)
                .is_none()
        );
        let (_, mac) = t.split_once('.').unwrap();
        let forged = format!("{}.{mac}", "YWNjb3VudCA4");
        assert!(k.open_token("verify", &forged).is_none());
        for bad in ["", ".", "x", "a.b.c", "!!!.???"] {
            assert!(k.open_token("verify", bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn argon2id_round_trip_with_owasp_params() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert_ne!(phc, hash_password("correct horse"), "salts are per hash");
    }

    #[test]
    fn secret_key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.key");
        let k1 = SecretKey::load_or_create(&p).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = SecretKey::load_or_create(&p).unwrap();
        assert_eq!(k1.keyed_hash("t", b"x"), k2.keyed_hash("t", b"x"));
        fs::write(&p, b"short").unwrap();
        assert!(SecretKey::load_or_create(&p).is_err());
    }
}
