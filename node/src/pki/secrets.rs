//! The cluster secrets that sign API tokens, with key ids, so the secret can
//! be rotated without logging everyone out.
//!
//! `data_dir/pki/cluster.secret` holds one key per line, `<kid> <hex>`, the
//! current one first; a file of a single hex line (before key ids) is key
//! `k0`. `concord init --rotate-secret` puts a new key first and keeps the
//! previous two: tokens signed with them stay valid until they expire, new
//! tokens are signed with the new key. Every node holds every key — so a
//! stolen node can mint tokens (see ARCHITECTURE.md, "Trust model").

use std::fs;

use super::{PkiError, PkiPaths, check_private, io, write_private};
use crate::auth::TokenKey;

/// Keys kept after a rotation (the current one and the previous two).
pub const KEPT_KEYS: usize = 3;

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every key of the secret file, current first: (kid, bytes).
pub fn load_keys(pki: &PkiPaths) -> Result<Vec<(String, Vec<u8>)>, PkiError> {
    let p = pki.secret();
    if !p.exists() {
        return Err(PkiError::Missing(p));
    }
    check_private(&p)?;
    let text = fs::read_to_string(&p).map_err(io(&p))?;
    let mut keys = Vec::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let (kid, h) = match line.split_once(' ') {
            Some((k, h)) => (k.trim().to_string(), h.trim()),
            None => ("k0".to_string(), line),
        };
        match parse_hex(h) {
            Some(b) if b.len() >= 32 && !kid.is_empty() && kid.len() <= 16 => keys.push((kid, b)),
            _ => {
                return Err(PkiError::Pem {
                    path: p,
                    message: format!(
                        "line {}: a key is `<kid> <hex>`, the kid 1–16 characters, the secret at least 64 hex digits",
                        i + 1
                    ),
                });
            }
        }
    }
    if keys.is_empty() {
        return Err(PkiError::Pem {
            path: p,
            message: "the file holds no key".into(),
        });
    }
    Ok(keys)
}

/// The token signer and checker of this cluster: every key of the secret
/// file, signing with the current one.
pub fn load_token_key(pki: &PkiPaths) -> Result<TokenKey, PkiError> {
    Ok(TokenKey::with_keys(load_keys(pki)?))
}

/// The current secret's bytes.
pub fn load_secret(pki: &PkiPaths) -> Result<Vec<u8>, PkiError> {
    Ok(load_keys(pki)?.swap_remove(0).1)
}

/// Writes a first secret, unless the file exists. Returns whether it wrote.
pub fn create(pki: &PkiPaths) -> Result<bool, PkiError> {
    if pki.secret().exists() {
        return Ok(false);
    }
    let secret: [u8; 32] = rand::random();
    write_private(&pki.secret(), format!("k1 {}\n", hex(&secret)).as_bytes())?;
    Ok(true)
}

/// Puts a new key first and keeps the previous [`KEPT_KEYS`] − 1. Returns
/// the new key's id.
pub fn rotate(pki: &PkiPaths) -> Result<String, PkiError> {
    let mut keys = load_keys(pki)?;
    let next = keys
        .iter()
        .filter_map(|(k, _)| k.strip_prefix('k').and_then(|n| n.parse::<u64>().ok()))
        .max()
        .unwrap_or(0)
        + 1;
    let kid = format!("k{next}");
    let secret: [u8; 32] = rand::random();
    keys.insert(0, (kid.clone(), secret.to_vec()));
    keys.truncate(KEPT_KEYS);
    let text: String = keys
        .iter()
        .map(|(k, b)| format!("{k} {}\n", hex(b)))
        .collect();
    write_private(&pki.secret(), text.as_bytes())?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let dir = std::env::temp_dir().join(format!("concord-secrets-{}", rand::random::<u64>()));
        let pki = PkiPaths::new(dir.clone());
        // A file from before key ids: one hex line.
        write_private(&pki.secret(), hex(&[7u8; 32]).as_bytes()).expect("write");
        let old = load_token_key(&pki).expect("load");
        let claims = crate::auth::Claims {
            sub: "alice".into(),
            role: crate::auth::Role::Customer,
            exp: 2_000,
            iat: 0,
            sid: None,
        };
        let before = old.issue(&claims);
        assert_eq!(rotate(&pki).expect("rotate"), "k1");
        let new = load_token_key(&pki).expect("load");
        assert_eq!(
            new.verify(&before, 1_000),
            Ok(claims.clone()),
            "old tokens still check"
        );
        let after = new.issue(&claims);
        assert!(
            old.verify(&after, 1_000).is_err(),
            "a new token is signed with the new key"
        );
        for _ in 0..3 {
            rotate(&pki).expect("rotate");
        }
        let latest = load_token_key(&pki).expect("load");
        assert!(
            latest.verify(&before, 1_000).is_err(),
            "keys beyond the last three are gone"
        );
        assert_eq!(load_keys(&pki).expect("keys").len(), KEPT_KEYS);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
