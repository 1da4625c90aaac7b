//! Password hashing: argon2id off the async workers, at most a configured
//! number at once, so a login flood queues for hashing instead of stalling
//! carts and checkouts.
//!
//! An unknown e-mail is verified against a hash made at start-up, so it
//! costs exactly what a wrong password costs and timing does not tell which
//! e-mails have accounts.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Shortest password accepted, characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, bytes: argon2 takes any length, but a
/// multi-megabyte password would be a cheap way to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The argon2 parameters or the hash failed (not the caller's fault).
    #[error("password hashing failed: {0}")]
    Argon(String),
    /// The blocking pool went away (the node is stopping).
    #[error("password hashing was cancelled")]
    Cancelled,
}

/// The node's password hasher.
#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords(…)")
    }
}

impl Passwords {
    /// A hasher with `memory_kib` of memory and `iterations` passes (one
    /// lane), computing at most `concurrent` hashes at once.
    pub fn new(memory_kib: u32, iterations: u32, concurrent: usize) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| HashError::Argon(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let filler: [u8; 16] = rand::random();
        let dummy = hash_with(&argon, &filler)?;
        Ok(Self {
            argon,
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            dummy: dummy.into(),
        })
    }

    /// The PHC string of `password` under a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Cancelled)?;
        let argon = self.argon.clone();
        tokio::task::spawn_blocking(move || hash_with(&argon, password.as_bytes()))
            .await
            .map_err(|_| HashError::Cancelled)?
    }

    /// Whether `password` matches `hash`; with no hash (an unknown e-mail),
    /// the same work against the start-up hash, and `false`.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let argon = self.argon.clone();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            argon
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

fn hash_with(argon: &Argon2<'_>, password: &[u8]) -> Result<String, HashError> {
    let salt: [u8; 16] = rand::random();
    argon
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let p = Passwords::new(1_024, 1, 2).expect("hasher");
        let h = p.hash("correct horse".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(p.verify("correct horse".into(), Some(h.clone())).await);
        assert!(!p.verify("wrong horse".into(), Some(h.clone())).await);
        assert!(!p.verify("correct horse".into(), None).await);
        // A fresh salt each time.
        assert_ne!(h, p.hash("correct horse".into()).await.expect("hash"));
    }
}
