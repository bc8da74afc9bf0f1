//! Access tokens: compact JWTs signed with HMAC-SHA256. The algorithm is
//! pinned — a token whose header names any other algorithm (`none`
//! included) is refused before its signature is looked at — and the
//! signature is checked in constant time (ring's `hmac::verify`). Each key
//! has a key id (`kid`, in the header) so that keys can be rotated while
//! tokens signed with the previous key stay valid until they expire.

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
    #[error("token signed with an unknown key")]
    UnknownKey,
}

/// A signing key with its key id; `kid: None` is the key of tokens issued
/// before key ids existed (their header has no `kid`).
pub struct JwtKey {
    kid: Option<u32>,
    key: hmac::Key,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKey(kid {:?}, ..)", self.kid)
    }
}

/// The header, split parts and key id of a token, with the algorithm
/// checked before anything else is believed.
struct Parsed<'a> {
    header_len: usize,
    body: &'a str,
    sig: &'a str,
    kid: Option<u32>,
}

fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
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
    let kid = match header.get("kid") {
        None => None,
        Some(serde_json::Value::String(k)) => {
            Some(k.parse::<u32>().map_err(|_| JwtError::UnknownKey)?)
        }
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok(Parsed {
        header_len: h.len(),
        body: b,
        sig,
        kid,
    })
}

/// The key id a token claims to be signed with (`None`: no `kid` header).
pub fn kid_of(token: &str) -> Result<Option<u32>, JwtError> {
    parse(token).map(|p| p.kid)
}

impl JwtKey {
    /// A key without a key id (tokens from before key rotation).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            kid: None,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn with_kid(kid: u32, secret: &[u8; 32]) -> Self {
        Self {
            kid: Some(kid),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn kid(&self) -> Option<u32> {
        self.kid
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = match self.kid {
            Some(k) => format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{k}"}}"#),
            None => r#"{"alg":"HS256","typ":"JWT"}"#.to_owned(),
        };
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(body));
        let tag = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(tag.as_ref()))
    }

    /// The claims of a token this key signed that has not expired at
    /// `now_s`; a token naming another key id is refused.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Claims, JwtError> {
        let Parsed {
            header_len,
            body: b,
            sig,
            kid,
        } = parse(token)?;
        if kid != self.kid {
            return Err(JwtError::UnknownKey);
        }
        let h = &token[..header_len];
        let sig = B64.decode(sig).map_err(|_| JwtError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + b.len()];
        hmac::verify(&self.key, signing_input.as_bytes(), &sig).map_err(|_| JwtError::Signature)?;
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
    fn key_ids_travel_in_the_header_and_must_match() {
        let k3 = JwtKey::with_kid(3, &[3; 32]);
        let t = k3.sign(&claims(1_000));
        assert_eq!(kid_of(&t), Ok(Some(3)));
        assert_eq!(k3.verify(&t, 0).unwrap(), claims(1_000));
        // Same secret, other key id: refused before the signature.
        assert_eq!(
            JwtKey::with_kid(4, &[3; 32]).verify(&t, 0),
            Err(JwtError::UnknownKey)
        );
        assert_eq!(
            JwtKey::new(&[3; 32]).verify(&t, 0),
            Err(JwtError::UnknownKey)
        );
        let legacy = JwtKey::new(&[3; 32]).sign(&claims(1_000));
        assert_eq!(kid_of(&legacy), Ok(None));
        assert_eq!(k3.verify(&legacy, 0), Err(JwtError::UnknownKey));
        let h = B64.encode(r#"{"alg":"HS256","kid":"x"}"#);
        assert_eq!(kid_of(&format!("{h}.e30.AAAA")), Err(JwtError::UnknownKey));
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
