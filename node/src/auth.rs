//! Bearer tokens: compact JWTs signed with HMAC-SHA256 under the cluster
//! secret, so that any node can check a token any other node issued.
//!
//! Checking is strict: the header must say exactly `HS256` (so `alg: none`
//! and algorithm confusion are refused), the signature is compared in
//! constant time, and `exp` is required and enforced. Tokens carry the id
//! of the key that signed them (`kid`), so the secret can be rotated: a
//! node checks a token with the key it names, and signs with the current
//! key (see `pki::secrets`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a token lets its bearer do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: catalog, inventory, any cart or order.
    Admin,
    /// Their own carts and orders.
    Customer,
}

/// The claims a token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the customer id (or the admin's name).
    pub sub: String,
    /// Role.
    pub role: Role,
    /// Expiry, Unix seconds. Required.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// The session (refresh-token family) of an account's token: signing
    /// out ends it on every node. Absent in operator-minted tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Why a token was refused (every case is a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or not JSON inside.
    #[error("the token is malformed")]
    Malformed,
    /// The header names another algorithm (or none).
    #[error("the token's algorithm must be HS256")]
    Algorithm,
    /// The signature does not match.
    #[error("the token's signature is invalid")]
    Signature,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Signs and checks tokens with the cluster secret. Tokens already checked
/// are remembered (by their full text, so a changed byte is a miss), which
/// spares clients that reuse a token a signature check per request; expiry is
/// still checked on every use.
#[derive(Clone)]
pub struct TokenKey {
    /// (kid, secret), the signing key first.
    keys: std::sync::Arc<Vec<(String, Vec<u8>)>>,
    checked: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Claims>>>,
}

/// Most tokens remembered at once.
const CHECKED_CAPACITY: usize = 10_000;

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

/// Leeway for clocks that disagree a little, seconds.
pub const LEEWAY_SECS: u64 = 30;

impl TokenKey {
    /// A key over one secret (key id `k0`).
    pub fn new(secret: Vec<u8>) -> Self {
        Self::with_keys(vec![("k0".to_string(), secret)])
    }

    /// A key over several secrets, the first signing.
    pub fn with_keys(keys: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            keys: std::sync::Arc::new(keys),
            checked: Default::default(),
        }
    }

    fn mac_for(secret: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    fn mac(&self) -> HmacSha256 {
        Self::mac_for(
            self.keys
                .first()
                .map(|k| k.1.as_slice())
                .unwrap_or_default(),
        )
    }

    /// Issues a token, signed with the current key.
    pub fn issue(&self, claims: &Claims) -> String {
        let kid = self.keys.first().map(|k| k.0.as_str()).unwrap_or("k0");
        let header = B64.encode(
            serde_json::to_vec(&Header {
                alg: "HS256".into(),
                typ: Some("JWT".into()),
                kid: Some(kid.to_string()),
            })
            .unwrap_or_default(),
        );
        let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{body}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// A one-minute admin token for a node's own requests to other nodes
    /// (the inspection fan-out), with subject `node:<id>`.
    pub fn internal_admin(&self, node: &str) -> String {
        let now = crate::clock::now_secs();
        self.issue(&Claims {
            sub: format!("node:{node}"),
            role: Role::Admin,
            exp: now + 60,
            iat: now,
            sid: None,
        })
    }

    /// A 16-byte tag over `data` under the signing key, for `domain`: what
    /// makes refresh tokens and guest cart ids impossible to forge.
    pub fn seal(&self, domain: &str, data: &[u8]) -> [u8; 16] {
        let secret = self
            .keys
            .first()
            .map(|k| k.1.as_slice())
            .unwrap_or_default();
        Self::tag(secret, domain, data)
    }

    /// Whether `tag` seals `data` under any key held (in constant time per key).
    pub fn check_seal(&self, domain: &str, data: &[u8], tag: &[u8]) -> bool {
        self.keys.iter().any(|(_, secret)| {
            let mut mac = Self::mac_for(secret);
            mac.update(domain.as_bytes());
            mac.update(&[0]);
            mac.update(data);
            mac.verify_truncated_left(tag).is_ok() && tag.len() == 16
        })
    }

    fn tag(secret: &[u8], domain: &str, data: &[u8]) -> [u8; 16] {
        let mut mac = Self::mac_for(secret);
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Checks a token at time `now_secs` and returns its claims.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        let cached = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(c) = cached {
            return if c.exp.saturating_add(LEEWAY_SECS) < now_secs {
                Err(TokenError::Expired)
            } else {
                Ok(c)
            };
        }
        let claims = self.verify_uncached(token, now_secs)?;
        let mut g = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= CHECKED_CAPACITY {
            g.clear();
        }
        g.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        // The key the token names; a token without a kid (issued before key
        // ids) is checked against every key held.
        let candidates: Vec<&Vec<u8>> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| &k.0 == kid)
                .map(|k| &k.1)
                .collect(),
            None => self.keys.iter().map(|k| &k.1).collect(),
        };
        let signed = candidates.into_iter().any(|secret| {
            let mut mac = Self::mac_for(secret);
            mac.update(h.as_bytes());
            mac.update(b".");
            mac.update(b.as_bytes());
            mac.verify_slice(&sig).is_ok()
        });
        if !signed {
            return Err(TokenError::Signature);
        }
        let claims: Claims = B64
            .decode(b)
            .ok()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp.saturating_add(LEEWAY_SECS) < now_secs {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(vec![7; 32])
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            role: Role::Customer,
            exp,
            iat: 0,
            sid: None,
        }
    }

    #[test]
    fn a_token_round_trips() {
        let t = key().issue(&claims(2_000));
        assert_eq!(key().verify(&t, 1_000), Ok(claims(2_000)));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let k = key();
        let t = k.issue(&claims(2_000));
        assert_eq!(k.verify(&t, 3_000), Err(TokenError::Expired));
        assert_eq!(
            TokenKey::new(vec![8; 32]).verify(&t, 1_000),
            Err(TokenError::Signature)
        );
        assert_eq!(k.verify("a.b", 0), Err(TokenError::Malformed));
        assert_eq!(k.verify("", 0), Err(TokenError::Malformed));
        // alg: none, with an empty signature.
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(k.verify(&none, 0), Err(TokenError::Algorithm));
        // A tampered body.
        let other = B64.encode(
            serde_json::to_vec(&Claims {
                role: Role::Admin,
                ..claims(2_000)
            })
            .unwrap(),
        );
        let forged = format!("{}.{}.{}", parts[0], other, parts[2]);
        assert_eq!(k.verify(&forged, 0), Err(TokenError::Signature));
        // exp is required.
        let no_exp = B64.encode(br#"{"sub":"a","role":"admin"}"#);
        let mut mac = k.mac();
        mac.update(format!("{}.{}", parts[0], no_exp).as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        assert_eq!(
            k.verify(&format!("{}.{}.{}", parts[0], no_exp, sig), 0),
            Err(TokenError::Malformed)
        );
    }
}
