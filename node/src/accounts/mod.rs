//! Customer and staff accounts on the node: the services the account routes
//! share (password hashing, login limits), the rules for e-mails and
//! passwords, the tokens a session is given, and the check every request
//! with an account's token passes — so a disabled account, a signed-out
//! session or a superseded registration is refused at once, on every node.

pub mod guard;
pub mod passwords;
pub mod tokens;

use crdt_core::account::{AccountEntry, AccountRole, Rotation};
use crdt_core::{AccountId, Replica, SessionId};

use crate::auth::{Claims, Role, TokenKey};
use crate::config::AccountsConfig;
pub use guard::Guard;
pub use passwords::{HashError, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, Passwords};
pub use tokens::{RefreshToken, is_guest_cart, mint_guest_cart};

/// Longest e-mail accepted (RFC 5321's limit on a path).
pub const MAX_EMAIL_BYTES: usize = 254;

/// What the account routes share.
pub struct Accounts {
    /// `[accounts]`.
    pub config: AccountsConfig,
    /// The password hasher.
    pub passwords: Passwords,
    /// Login and registration limits.
    pub guard: Guard,
}

impl Accounts {
    /// The services of `[accounts]`.
    pub fn new(config: &AccountsConfig) -> Result<Self, HashError> {
        Ok(Self {
            passwords: Passwords::new(
                config.argon2_memory_kib,
                config.argon2_iterations,
                config.max_concurrent_hashes,
            )?,
            guard: Guard::new(config),
            config: config.clone(),
        })
    }
}

/// An e-mail, normalised for comparing: trimmed and lower-cased. Refuses
/// what is plainly not an address (one `@`, something either side, a dot
/// in the domain, no spaces or control characters).
pub fn normalize_email(raw: &str) -> Result<String, &'static str> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() || e.len() > MAX_EMAIL_BYTES {
        return Err("must be an e-mail address of at most 254 bytes");
    }
    let Some((local, domain)) = e.split_once('@') else {
        return Err("must be an e-mail address such as ada@example.com");
    };
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad(local) || bad(domain) || domain.contains('@') || !domain.contains('.') {
        return Err("must be an e-mail address such as ada@example.com");
    }
    if domain.starts_with('.') || domain.ends_with('.') {
        return Err("must be an e-mail address such as ada@example.com");
    }
    Ok(e)
}

/// Refuses a password too short or too long.
pub fn check_password(pw: &str) -> Result<(), String> {
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    Ok(())
}

/// The token role of an account role.
pub fn role_of(r: AccountRole) -> Role {
    match r {
        AccountRole::Admin => Role::Admin,
        AccountRole::Customer => Role::Customer,
    }
}

/// The access token of a session at one rotation: a function of the
/// rotation, so a replayed refresh (within the grace window, on any node)
/// gets the very same token. Returns it and its expiry (Unix seconds).
pub fn access_token(
    key: &TokenKey,
    account: AccountId,
    role: AccountRole,
    session: SessionId,
    rotation: Rotation,
    config: &AccountsConfig,
) -> (String, u64) {
    let iat = rotation.at_ms / 1000;
    let exp = iat + config.access_token.as_secs();
    let token = key.issue(&Claims {
        sub: account.to_string(),
        role: role_of(role),
        exp,
        iat,
        sid: Some(session.to_string()),
    });
    (token, exp)
}

/// Why a valid token is no longer honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Standing {
    /// An admin disabled the account.
    #[error("this account is disabled")]
    Disabled,
    /// The session was signed out or revoked.
    #[error("this session has ended: sign in again")]
    SessionEnded,
    /// Another registration of the same e-mail, made concurrently on another
    /// node, owns it.
    #[error(
        "this account was registered at the same time as another with the same e-mail, on another node, and the other one owns the e-mail"
    )]
    Superseded,
}

/// Whether `claims` still stand: the account (when this node knows it) is
/// enabled and owns its e-mail, and the session (when known) is live. What
/// this node has not heard of yet is given the benefit of the doubt — the
/// token's signature proves a node issued it — so a customer who registers
/// on one node can use the next node at once.
pub fn standing(r: &Replica, claims: &Claims) -> Result<(), Standing> {
    let Ok(id) = claims.sub.parse::<uuid::Uuid>().map(AccountId) else {
        return Ok(());
    };
    let Some(e) = r.account(&id) else {
        return Ok(());
    };
    account_standing(r, &id, e)?;
    if let Some(sid) = claims.sid.as_deref()
        && let Ok(sid) = sid.parse::<uuid::Uuid>().map(SessionId)
        && e.sessions.get(&sid).is_some_and(|s| s.revoked)
    {
        return Err(Standing::SessionEnded);
    }
    Ok(())
}

/// Whether an account may act at all.
pub fn account_standing(r: &Replica, id: &AccountId, e: &AccountEntry) -> Result<(), Standing> {
    if e.is_disabled() {
        return Err(Standing::Disabled);
    }
    if !r.owns_email(id) {
        return Err(Standing::Superseded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").as_deref(),
            Ok("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "a@b@c.com",
            "a@localhost",
            "a@.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn passwords_have_a_floor_and_a_ceiling() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
        assert!(check_password(&"x".repeat(257)).is_err());
        // Eight characters, not eight bytes.
        assert!(check_password("ééééééé").is_err());
    }
}
