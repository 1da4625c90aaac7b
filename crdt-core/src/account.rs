//! Accounts: customers and staff, their sessions (refresh-token families),
//! address books and failed-login counts — one entry per account, every
//! field a join-semilattice, so any node takes any account write while cut
//! off and all nodes converge.
//!
//! | field | CRDT |
//! |---|---|
//! | registration (e-mail, role, when, where) | first writer wins: the least `(created, writer)` |
//! | name, password hash, disabled | LWW registers |
//! | addresses | map of LWW registers; `None` is a deletion (kept as a tombstone) |
//! | sessions | map of session states, bounded to the [`MAX_SESSIONS`] newest |
//! | failed logins | per time bucket, per node a max-register; the [`FAILURE_BUCKETS`] newest buckets kept |
//!
//! A session joins field by field: creation time (immutable, the least),
//! rotation (a max-register on `(generation, at_ms, writer)`), revoked (an
//! "or": revocation wins, and is final).
//!
//! **Bounded by truncation that is itself a lattice.** Sessions keep the
//! [`MAX_SESSIONS`] greatest `(created, id)`, failure buckets the
//! [`FAILURE_BUCKETS`] greatest bucket numbers. The rank of an element never
//! changes, and an element dropped from a join has that many greater ones
//! in it, which every later join keeps; so `top(top(a ⊔ b) ⊔ c) =
//! top(a ⊔ b ⊔ c)` and the join stays associative (`tests/laws.rs`). An
//! evicted session is signed out; an evicted bucket is older than the
//! lockout window, so nothing reads it anyway. This is how the revocation set
//! "expires": a session's state lives while it is among the newest of its
//! account, and a revoked session that falls out is also past any use.
//!
//! **One e-mail, one account.** Registrations of one e-mail on two sides of a
//! partition make two accounts (random ids); the replica indexes accounts by
//! e-mail, and the account with the least `(created, writer)` *owns* it
//! ([`crate::Replica::account_by_email`]). The others are *superseded*: their
//! tokens are refused and they cannot sign in. See ARCHITECTURE.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Hlc;
use crate::ids::{Actor, AddressId, SessionId};
use crate::lww::Lww;
use crate::order::Address;

/// Most sessions an account keeps; a new one beyond signs out the oldest.
pub const MAX_SESSIONS: usize = 32;
/// How many failed-login buckets an account keeps.
pub const FAILURE_BUCKETS: usize = 4;
/// The width of one failed-login bucket, ms (with [`FAILURE_BUCKETS`], the
/// counts cover the last 15–20 minutes).
pub const FAILURE_BUCKET_MS: u64 = 5 * 60_000;
/// Most live addresses in an address book.
pub const MAX_ADDRESSES: usize = 20;
/// Most address entries, deletions included (each deletion is kept so that
/// a concurrent edit cannot bring the address back).
pub const MAX_ADDRESS_ENTRIES: usize = 200;

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AccountRole {
    /// A shopper: their own carts, orders and profile.
    Customer,
    /// Staff: everything a cluster admin token may do.
    Admin,
}

/// How an account came to be: fixed at registration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Registration {
    /// When it was registered (the writer's clock); with `writer`, decides
    /// which of two registrations of one e-mail owns it.
    pub created: Hlc,
    /// The node that took the registration.
    pub writer: Actor,
    /// The e-mail, normalised (trimmed, lower-cased).
    pub email: String,
    /// Customer or staff.
    pub role: AccountRole,
}

/// The latest rotation of a session's refresh token.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Rotation {
    /// The generation of the current refresh token (0 at login).
    pub generation: u32,
    /// When that generation was issued, ms: its access token's `iat`.
    pub at_ms: u64,
    /// The node that issued it.
    pub writer: Option<Actor>,
}

/// One session: a refresh-token family.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionState {
    /// When it began (login or registration).
    pub created: Hlc,
    /// The current refresh token's generation (a max-register).
    pub rotation: Rotation,
    /// Signed out, or caught reusing a rotated token: final.
    pub revoked: bool,
}

impl SessionState {
    fn join(&mut self, o: &Self) {
        self.created = self.created.min(o.created);
        self.rotation = self.rotation.max(o.rotation);
        self.revoked |= o.revoked;
    }
}

/// What a presented refresh token earns (see [`AccountEntry::refresh_verdict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// The current token: rotate to generation `to`.
    Rotate {
        /// The next generation.
        to: u32,
    },
    /// The token just before the current one, presented again within the
    /// grace window (a retry, on any node): answer the current pair again.
    Replay(Rotation),
    /// A rotated token presented after the grace window — someone kept a
    /// copy: revoke the whole family.
    Reused,
    /// No such session, revoked, or expired.
    Refused,
}

/// One account's entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountEntry {
    /// How the account came to be (`None` only in a delta that does not
    /// carry it).
    pub registration: Option<Registration>,
    /// Display name.
    pub name: Option<Lww<String>>,
    /// The password's argon2id hash, in PHC string form.
    pub password: Option<Lww<String>>,
    /// Disabled by an admin.
    pub disabled: Option<Lww<bool>>,
    /// The address book.
    pub addresses: BTreeMap<AddressId, Lww<Option<Address>>>,
    /// Sessions by id.
    pub sessions: BTreeMap<SessionId, SessionState>,
    /// Failed logins: bucket number → node → count.
    pub failures: BTreeMap<u64, BTreeMap<Actor, u32>>,
}

fn join_lww<V: Ord + Clone>(a: &mut Option<Lww<V>>, b: &Option<Lww<V>>) {
    match (a.as_mut(), b) {
        (_, None) => {}
        (None, Some(b)) => *a = Some(b.clone()),
        (Some(a), Some(b)) => a.join(b),
    }
}

impl AccountEntry {
    /// The lattice join.
    pub fn join(&mut self, o: &Self) {
        match (&self.registration, &o.registration) {
            (_, None) => {}
            (None, Some(_)) => self.registration = o.registration.clone(),
            (Some(a), Some(b)) => {
                if b < a {
                    self.registration = o.registration.clone();
                }
            }
        }
        join_lww(&mut self.name, &o.name);
        join_lww(&mut self.password, &o.password);
        join_lww(&mut self.disabled, &o.disabled);
        for (id, a) in &o.addresses {
            match self.addresses.get_mut(id) {
                Some(mine) => mine.join(a),
                None => {
                    self.addresses.insert(*id, a.clone());
                }
            }
        }
        for (id, s) in &o.sessions {
            match self.sessions.get_mut(id) {
                Some(mine) => mine.join(s),
                None => {
                    self.sessions.insert(*id, s.clone());
                }
            }
        }
        if self.sessions.len() > MAX_SESSIONS {
            let mut ranked: Vec<(Hlc, SessionId)> = self
                .sessions
                .iter()
                .map(|(id, s)| (s.created, *id))
                .collect();
            ranked.sort_unstable();
            for (_, id) in &ranked[..ranked.len() - MAX_SESSIONS] {
                self.sessions.remove(id);
            }
        }
        for (bucket, counts) in &o.failures {
            let mine = self.failures.entry(*bucket).or_default();
            for (actor, n) in counts {
                let c = mine.entry(*actor).or_default();
                *c = (*c).max(*n);
            }
        }
        while self.failures.len() > FAILURE_BUCKETS {
            self.failures.pop_first();
        }
    }

    /// Whether this entry is the lattice bottom.
    pub fn is_bottom(&self) -> bool {
        self.registration.is_none()
            && self.name.is_none()
            && self.password.is_none()
            && self.disabled.is_none()
            && self.addresses.is_empty()
            && self.sessions.is_empty()
            && self.failures.is_empty()
    }

    /// Whether an admin disabled the account.
    pub fn is_disabled(&self) -> bool {
        self.disabled.as_ref().is_some_and(|d| d.value)
    }

    /// The e-mail, if registered.
    pub fn email(&self) -> Option<&str> {
        self.registration.as_ref().map(|r| r.email.as_str())
    }

    /// The role (customer until registered).
    pub fn role(&self) -> AccountRole {
        self.registration
            .as_ref()
            .map_or(AccountRole::Customer, |r| r.role)
    }

    /// The display name.
    pub fn name(&self) -> &str {
        self.name.as_ref().map_or("", |n| n.value.as_str())
    }

    /// The addresses not deleted, by id.
    pub fn live_addresses(&self) -> impl Iterator<Item = (&AddressId, &Address)> {
        self.addresses
            .iter()
            .filter_map(|(id, a)| a.value.as_ref().map(|a| (id, a)))
    }

    /// A live address.
    pub fn address(&self, id: &AddressId) -> Option<&Address> {
        self.addresses.get(id).and_then(|a| a.value.as_ref())
    }

    /// The session, if live (present and not revoked).
    pub fn live_session(&self, id: &SessionId) -> Option<&SessionState> {
        self.sessions.get(id).filter(|s| !s.revoked)
    }

    /// The bucket of wall time `ms`.
    pub fn failure_bucket(ms: u64) -> u64 {
        ms / FAILURE_BUCKET_MS
    }

    /// Failed logins counted in the buckets that overlap the `window_ms`
    /// before `now_ms`, across all nodes.
    pub fn failures_since(&self, now_ms: u64, window_ms: u64) -> u32 {
        let first = Self::failure_bucket(now_ms.saturating_sub(window_ms));
        self.failures
            .range(first..)
            .flat_map(|(_, c)| c.values())
            .fold(0u32, |a, n| a.saturating_add(*n))
    }

    /// This node's count in the bucket of `now_ms`.
    pub fn failures_of(&self, actor: Actor, now_ms: u64) -> u32 {
        self.failures
            .get(&Self::failure_bucket(now_ms))
            .and_then(|c| c.get(&actor))
            .copied()
            .unwrap_or(0)
    }

    /// What a refresh token of `session` at `generation`, presented at
    /// `now_ms`, earns: the rule every node applies, so a retry lands the
    /// same way wherever it is sent. `ttl_ms` is the refresh token's life,
    /// measured from its issue; `grace_ms` how long the previous token
    /// still replays the current pair.
    pub fn refresh_verdict(
        &self,
        session: &SessionId,
        generation: u32,
        now_ms: u64,
        grace_ms: u64,
        ttl_ms: u64,
    ) -> RefreshVerdict {
        let Some(s) = self.live_session(session) else {
            return RefreshVerdict::Refused;
        };
        let current = s.rotation;
        if generation > current.generation {
            // Never issued: a forged generation would need the MAC, so this
            // is a token from a state we have not seen yet — not proof of
            // theft. Refuse without revoking.
            return RefreshVerdict::Refused;
        }
        if generation == current.generation {
            if current.at_ms.saturating_add(ttl_ms) < now_ms {
                return RefreshVerdict::Refused;
            }
            return RefreshVerdict::Rotate {
                to: generation.saturating_add(1),
            };
        }
        if generation + 1 == current.generation && now_ms <= current.at_ms.saturating_add(grace_ms)
        {
            return RefreshVerdict::Replay(current);
        }
        RefreshVerdict::Reused
    }
}

/// A session as it starts, at `created` on `writer`.
pub fn new_session(created: Hlc, writer: Actor) -> SessionState {
    SessionState {
        created,
        rotation: Rotation {
            generation: 0,
            at_ms: created.ms,
            writer: Some(writer),
        },
        revoked: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn actor(n: &str) -> Actor {
        Actor::first(NodeId::new(n).expect("node id"))
    }

    fn with_session(id: u128, created_ms: u64) -> AccountEntry {
        let mut e = AccountEntry::default();
        e.sessions.insert(
            SessionId(uuid::Uuid::from_u128(id)),
            new_session(Hlc::from_ms(created_ms), actor("n1")),
        );
        e
    }

    #[test]
    fn sessions_keep_the_newest_and_revocation_wins() {
        let mut all = AccountEntry::default();
        for i in 0..(MAX_SESSIONS as u128 + 5) {
            all.join(&with_session(i, 1_000 + i as u64));
        }
        assert_eq!(all.sessions.len(), MAX_SESSIONS);
        assert!(
            !all.sessions
                .contains_key(&SessionId(uuid::Uuid::from_u128(4)))
        );
        assert!(
            all.sessions
                .contains_key(&SessionId(uuid::Uuid::from_u128(5)))
        );
        let sid = SessionId(uuid::Uuid::from_u128(10));
        let mut revoked = with_session(10, 1_010);
        revoked.sessions.get_mut(&sid).expect("session").revoked = true;
        let mut rotated = with_session(10, 1_010);
        rotated
            .sessions
            .get_mut(&sid)
            .expect("session")
            .rotation
            .generation = 3;
        all.join(&rotated);
        all.join(&revoked);
        let s = &all.sessions[&sid];
        assert!(s.revoked);
        assert_eq!(s.rotation.generation, 3);
        assert!(all.live_session(&sid).is_none());
    }

    #[test]
    fn failure_buckets_age_out_and_count_per_node() {
        let mut e = AccountEntry::default();
        for (bucket, node, n) in [(1, "n1", 2), (1, "n2", 3), (1, "n1", 1), (9, "n1", 4)] {
            let mut d = AccountEntry::default();
            d.failures.entry(bucket).or_default().insert(actor(node), n);
            e.join(&d);
        }
        let now = 9 * FAILURE_BUCKET_MS + 10;
        assert_eq!(e.failures_since(now, FAILURE_BUCKET_MS), 4);
        assert_eq!(e.failures_since(now, 10 * FAILURE_BUCKET_MS), 9);
        for b in 10..20 {
            let mut d = AccountEntry::default();
            d.failures.entry(b).or_default().insert(actor("n1"), 1);
            e.join(&d);
        }
        assert_eq!(e.failures.len(), FAILURE_BUCKETS);
        assert_eq!(e.failures.keys().next(), Some(&16));
    }

    #[test]
    fn refresh_rotates_replays_in_grace_and_detects_reuse() {
        let sid = SessionId(uuid::Uuid::from_u128(1));
        let mut e = with_session(1, 1_000);
        assert_eq!(
            e.refresh_verdict(&sid, 0, 2_000, 30_000, 1_000_000),
            RefreshVerdict::Rotate { to: 1 }
        );
        let rot = Rotation {
            generation: 1,
            at_ms: 2_000,
            writer: Some(actor("n2")),
        };
        e.sessions.get_mut(&sid).expect("session").rotation = rot;
        assert_eq!(
            e.refresh_verdict(&sid, 0, 31_000, 30_000, 1_000_000),
            RefreshVerdict::Replay(rot)
        );
        assert_eq!(
            e.refresh_verdict(&sid, 0, 33_000, 30_000, 1_000_000),
            RefreshVerdict::Reused
        );
        assert_eq!(
            e.refresh_verdict(&sid, 2, 3_000, 30_000, 1_000_000),
            RefreshVerdict::Refused
        );
        assert_eq!(
            e.refresh_verdict(&sid, 1, 2_000_000, 30_000, 1_000_000),
            RefreshVerdict::Refused
        );
        let other = SessionId(uuid::Uuid::from_u128(2));
        assert_eq!(
            e.refresh_verdict(&other, 0, 2_000, 30_000, 1_000_000),
            RefreshVerdict::Refused
        );
    }

    #[test]
    fn the_first_registration_wins() {
        let reg = |ms: u64, node: &str| AccountEntry {
            registration: Some(Registration {
                created: Hlc::from_ms(ms),
                writer: actor(node),
                email: "a@example.com".into(),
                role: AccountRole::Customer,
            }),
            ..Default::default()
        };
        let mut a = reg(5, "n2");
        a.join(&reg(5, "n1"));
        let mut b = reg(5, "n1");
        b.join(&reg(5, "n2"));
        assert_eq!(a, b);
        assert_eq!(a.registration.as_ref().map(|r| r.writer), Some(actor("n1")));
    }
}
