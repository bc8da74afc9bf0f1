//! Access tokens: compact JWTs signed with HMAC-SHA256. The algorithm is
//! pinned — a token whose header names any other algorithm (`none`
//! included) is refused before its signature is looked at — and the
//! signature is checked in constant time (ring's `hmac::verify`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// The claims of a web-session access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id.
    pub sub: u64,
    /// Session family id.
    pub sid: u64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// A signing key derived from the server secret.
pub struct JwtKey(hmac::Key);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(..)")
    }
}

impl JwtKey {
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(body));
        let tag = hmac::sign(&self.0, signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(tag.as_ref()))
    }

    /// The claims of a token this key signed that has not expired at
    /// `now_s`.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Claims, JwtError> {
        if token.len() > 4096 {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(h).map_err(|_| JwtError::Malformed)?)
                .map_err(|_| JwtError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(JwtError::Algorithm);
        }
        let sig = B64.decode(sig).map_err(|_| JwtError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + b.len()];
        hmac::verify(&self.0, signing_input.as_bytes(), &sig).map_err(|_| JwtError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(b).map_err(|_| JwtError::Malformed)?)
                .map_err(|_| JwtError::Malformed)?;
        if claims.exp <= now_s {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: 7,
            sid: 9,
            iat: 100,
            exp,
        }
    }

    #[test]
    fn round_trip_expiry_and_tampering() {
        let k = JwtKey::new(&[3; 32]);
        let t = k.sign(&claims(1_000));
        assert_eq!(k.verify(&t, 999).unwrap(), claims(1_000));
        assert_eq!(k.verify(&t, 1_000), Err(JwtError::Expired));
        assert_eq!(
            JwtKey::new(&[4; 32]).verify(&t, 0),
            Err(JwtError::Signature)
        );
        // Changing the claims breaks the signature.
        let parts: Vec<&str> = t.split('.').collect();
        let forged_body = B64.encode(serde_json::to_vec(&claims(9_999)).unwrap());
        let forged = format!("{}.{forged_body}.{}", parts[0], parts[2]);
        assert_eq!(k.verify(&forged, 0), Err(JwtError::Signature));
        for bad in ["", "a.b", "a.b.c.d", "!!.??.##", &"x".repeat(5000)] {
            assert!(k.verify(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let k = JwtKey::new(&[3; 32]);
        let body = B64.encode(serde_json::to_vec(&claims(i64::MAX)).unwrap());
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let h = B64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            for sig in ["", "AAAA"] {
                let t = format!("{h}.{body}.{sig}");
                assert_eq!(k.verify(&t, 0), Err(JwtError::Algorithm), "{alg}");
            }
        }
    }
}
