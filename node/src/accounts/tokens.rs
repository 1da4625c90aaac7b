//! Refresh tokens and guest cart ids: short strings a node mints and any
//! node checks, sealed with the cluster secret (see [`TokenKey::seal`]).
//!
//! - A refresh token names an account, a session and a generation:
//!   `rt1.` + base64url(account id ‖ session id ‖ generation ‖ tag). It is the same
//!   string whichever node mints it, so two nodes rotating one session to
//!   the same generation hand out the same token.
//! - A guest cart id is `g-` + base64url(16 random bytes ‖ tag): 128 random
//!   bits nobody can guess, and a tag that proves a node minted it, so a
//!   client cannot pass off a low-entropy name as a guest cart.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use crdt_core::{AccountId, SessionId};

use crate::auth::TokenKey;

const REFRESH_PREFIX: &str = "rt1.";
const REFRESH_DOMAIN: &str = "concord refresh token v1";
const GUEST_PREFIX: &str = "g-";
const GUEST_DOMAIN: &str = "concord guest cart v1";

/// A refresh token, decoded and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshToken {
    /// The account.
    pub account: AccountId,
    /// The session (token family).
    pub session: SessionId,
    /// Its generation.
    pub generation: u32,
}

impl RefreshToken {
    /// The token's text.
    pub fn encode(&self, key: &TokenKey) -> String {
        let mut data = Vec::with_capacity(52);
        data.extend_from_slice(self.account.0.as_bytes());
        data.extend_from_slice(self.session.0.as_bytes());
        data.extend_from_slice(&self.generation.to_be_bytes());
        let tag = key.seal(REFRESH_DOMAIN, &data);
        data.extend_from_slice(&tag);
        format!("{REFRESH_PREFIX}{}", B64.encode(data))
    }

    /// The token a text encodes, if a node of this cluster minted it.
    pub fn decode(text: &str, key: &TokenKey) -> Option<Self> {
        let body = text.strip_prefix(REFRESH_PREFIX)?;
        if body.len() > 80 {
            return None;
        }
        let bytes = B64.decode(body).ok()?;
        if bytes.len() != 52 || !key.check_seal(REFRESH_DOMAIN, &bytes[..36], &bytes[36..]) {
            return None;
        }
        let account = AccountId(uuid::Uuid::from_slice(&bytes[..16]).ok()?);
        let session = SessionId(uuid::Uuid::from_slice(&bytes[16..32]).ok()?);
        let generation = u32::from_be_bytes(bytes[32..36].try_into().ok()?);
        Some(Self {
            account,
            session,
            generation,
        })
    }
}

/// A new guest cart id.
pub fn mint_guest_cart(key: &TokenKey) -> String {
    let random: [u8; 16] = rand::random();
    let tag = key.seal(GUEST_DOMAIN, &random);
    let mut data = random.to_vec();
    data.extend_from_slice(&tag);
    format!("{GUEST_PREFIX}{}", B64.encode(data))
}

/// Whether a cart id is a guest cart id a node of this cluster minted.
pub fn is_guest_cart(id: &str, key: &TokenKey) -> bool {
    let Some(body) = id.strip_prefix(GUEST_PREFIX) else {
        return false;
    };
    if body.len() != 43 {
        return false;
    }
    let Ok(bytes) = B64.decode(body) else {
        return false;
    };
    bytes.len() == 32 && key.check_seal(GUEST_DOMAIN, &bytes[..16], &bytes[16..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_round_trip_and_refuse_forgery() {
        let key = TokenKey::new(vec![1; 32]);
        let t = RefreshToken {
            account: AccountId(uuid::Uuid::from_u128(9)),
            session: SessionId(uuid::Uuid::from_u128(7)),
            generation: 3,
        };
        let s = t.encode(&key);
        assert_eq!(RefreshToken::decode(&s, &key), Some(t));
        assert_eq!(s, t.encode(&key), "deterministic");
        assert_eq!(RefreshToken::decode(&s, &TokenKey::new(vec![2; 32])), None);
        let bumped = RefreshToken { generation: 4, ..t }.encode(&TokenKey::new(vec![2; 32]));
        assert_eq!(RefreshToken::decode(&bumped, &key), None);
        assert_eq!(RefreshToken::decode("rt1.AAAA", &key), None);
        assert_eq!(RefreshToken::decode("", &key), None);
    }

    #[test]
    fn guest_cart_ids_are_minted_here_and_valid_names() {
        let key = TokenKey::new(vec![1; 32]);
        let g = mint_guest_cart(&key);
        assert!(is_guest_cart(&g, &key));
        assert!(crdt_core::CartId::from_client(&g).is_ok(), "{g}");
        assert_ne!(g, mint_guest_cart(&key));
        assert!(!is_guest_cart(&g, &TokenKey::new(vec![2; 32])));
        assert!(!is_guest_cart(
            "g-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &key
        ));
        assert!(!is_guest_cart("cart-1", &key));
    }
}
