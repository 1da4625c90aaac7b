//! Planning of the account operations: each change becomes a delta of the
//! account's entry holding only the fields it writes (see
//! [`crate::account`]), stamped above what it overwrites.

use super::{OpError, PlanCtx, delta};
use crate::account::{
    AccountEntry, AccountRole, MAX_ADDRESS_ENTRIES, MAX_ADDRESSES, Registration, Rotation,
    new_session,
};
use crate::clock::{Hlc, Stamp};
use crate::delta::{Delta, Part};
use crate::ids::{AccountId, AddressId, CartId, SessionId};
use crate::lww::Lww;
use crate::order::Address;
use crate::state::State;

/// A change to one account.
#[derive(Clone, Debug, PartialEq)]
pub enum AccountChange {
    /// A new account, optionally signed in at once.
    Register {
        /// The e-mail, normalised.
        email: String,
        /// Display name.
        name: String,
        /// The argon2id hash of the password (PHC string).
        password_hash: String,
        /// Customer or staff.
        role: AccountRole,
        /// A session to begin with it.
        session: Option<SessionId>,
        /// A guest cart to bind to it.
        cart: Option<CartId>,
    },
    /// A sign-in: a new session (and, with a guest cart, binds the cart).
    StartSession {
        /// The session.
        session: SessionId,
        /// A guest cart to bind to the account.
        cart: Option<CartId>,
    },
    /// Rotates a session's refresh token from the current generation.
    Rotate {
        /// The session.
        session: SessionId,
        /// The generation presented (the current one).
        from: u32,
    },
    /// Signs sessions out (logout, reuse of a rotated token).
    Revoke {
        /// The sessions.
        sessions: Vec<SessionId>,
    },
    /// Counts a failed login on this node.
    FailedLogin,
    /// Changes the display name.
    SetName(String),
    /// Changes the password and signs out every session but `keep`.
    SetPassword {
        /// The new hash.
        password_hash: String,
        /// The session that asked.
        keep: Option<SessionId>,
    },
    /// Disables (signing out every session) or enables the account.
    SetDisabled(bool),
    /// Writes an address (`None` deletes it).
    PutAddress {
        /// The address.
        id: AddressId,
        /// Its new value.
        address: Option<Address>,
    },
}

/// Why an account change was refused (part of [`OpError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The e-mail belongs to an account this node knows.
    #[error("an account with this e-mail exists")]
    EmailTaken,
    /// No such account.
    #[error("account {0} not found")]
    NotFound(AccountId),
    /// No such live session.
    #[error("the session has ended")]
    SessionEnded,
    /// The generation presented is not the current one.
    #[error("the refresh token is not the session's current one")]
    StaleGeneration,
    /// No such address.
    #[error("address {0} not found")]
    AddressNotFound(AddressId),
    /// The address book is full.
    #[error("the address book holds as many addresses as allowed ({0})")]
    AddressBookFull(usize),
}

fn account<'a>(state: &'a State, id: &AccountId) -> Result<&'a AccountEntry, OpError> {
    state
        .accounts
        .get(id)
        .filter(|e| e.registration.is_some())
        .ok_or(OpError::Account(AccountError::NotFound(*id)))
}

fn stamp(ctx: &mut PlanCtx<'_>, floor: Hlc) -> Stamp {
    Stamp {
        hlc: ctx.clock.now_above(ctx.wall_ms, floor),
        actor: ctx.actor,
    }
}

fn floor_of<V>(r: &Option<Lww<V>>) -> Hlc {
    r.as_ref().map(|r| r.stamp.hlc).unwrap_or_default()
}

fn account_delta(ctx: &PlanCtx<'_>, hlc: Hlc, id: AccountId, entry: AccountEntry) -> Delta {
    delta(
        ctx,
        hlc,
        Vec::new(),
        vec![Part::Account {
            id,
            entry: Box::new(entry),
        }],
    )
}

/// Revokes every live session of `e` except `keep`, into `d`.
fn revoke_all(e: &AccountEntry, d: &mut AccountEntry, keep: Option<SessionId>) {
    for (sid, s) in &e.sessions {
        if !s.revoked && Some(*sid) != keep {
            let mut s = s.clone();
            s.revoked = true;
            d.sessions.insert(*sid, s);
        }
    }
}

/// Binds a guest cart to the account, if the cart is bound to nobody yet
/// (a cart someone else owns stays theirs).
fn bind_guest_cart(state: &State, cart: Option<CartId>, id: AccountId) -> Option<Part> {
    let cart = cart?;
    let unbound = state
        .carts
        .get(&cart)
        .is_none_or(|c| c.customer().is_none());
    unbound.then(|| Part::CartOwner {
        cart,
        customer: id.to_string(),
    })
}

pub(super) fn plan_account(
    state: &State,
    ctx: &mut PlanCtx<'_>,
    id: AccountId,
    change: AccountChange,
) -> Result<Delta, OpError> {
    let mut d = AccountEntry::default();
    let mut parts_extra = Vec::new();
    let hlc = match change {
        AccountChange::Register {
            email,
            name,
            password_hash,
            role,
            session,
            cart,
        } => {
            if ctx.email_owner.is_some() {
                return Err(OpError::Account(AccountError::EmailTaken));
            }
            if state.accounts.get(&id).is_some() {
                return Err(OpError::Account(AccountError::EmailTaken));
            }
            let s = stamp(ctx, Hlc::default());
            d.registration = Some(Registration {
                created: s.hlc,
                writer: ctx.actor,
                email,
                role,
            });
            d.name = Some(Lww::new(name, s));
            d.password = Some(Lww::new(password_hash, s));
            if let Some(sid) = session {
                d.sessions.insert(sid, new_session(s.hlc, ctx.actor));
            }
            parts_extra.extend(bind_guest_cart(state, cart, id));
            s.hlc
        }
        AccountChange::StartSession { session, cart } => {
            account(state, &id)?;
            let s = stamp(ctx, Hlc::default());
            d.sessions.insert(session, new_session(s.hlc, ctx.actor));
            parts_extra.extend(bind_guest_cart(state, cart, id));
            s.hlc
        }
        AccountChange::Rotate { session, from } => {
            let e = account(state, &id)?;
            let current = e
                .live_session(&session)
                .ok_or(OpError::Account(AccountError::SessionEnded))?;
            if current.rotation.generation != from {
                return Err(OpError::Account(AccountError::StaleGeneration));
            }
            let s = stamp(ctx, current.created);
            let mut next = current.clone();
            next.rotation = Rotation {
                generation: from.saturating_add(1),
                at_ms: s.hlc.ms,
                writer: Some(ctx.actor),
            };
            d.sessions.insert(session, next);
            s.hlc
        }
        AccountChange::Revoke { sessions } => {
            let e = account(state, &id)?;
            for sid in sessions {
                if let Some(s) = e.live_session(&sid) {
                    let mut s = s.clone();
                    s.revoked = true;
                    d.sessions.insert(sid, s);
                }
            }
            if d.sessions.is_empty() {
                return Err(OpError::Unchanged);
            }
            ctx.clock.now(ctx.wall_ms)
        }
        AccountChange::FailedLogin => {
            let e = account(state, &id)?;
            let bucket = AccountEntry::failure_bucket(ctx.wall_ms);
            let n = e.failures_of(ctx.actor, ctx.wall_ms).saturating_add(1);
            d.failures.entry(bucket).or_default().insert(ctx.actor, n);
            ctx.clock.now(ctx.wall_ms)
        }
        AccountChange::SetName(name) => {
            let e = account(state, &id)?;
            if e.name() == name {
                return Err(OpError::Unchanged);
            }
            let s = stamp(ctx, floor_of(&e.name));
            d.name = Some(Lww::new(name, s));
            s.hlc
        }
        AccountChange::SetPassword {
            password_hash,
            keep,
        } => {
            let e = account(state, &id)?;
            let s = stamp(ctx, floor_of(&e.password));
            d.password = Some(Lww::new(password_hash, s));
            revoke_all(e, &mut d, keep);
            s.hlc
        }
        AccountChange::SetDisabled(disabled) => {
            let e = account(state, &id)?;
            if e.is_disabled() == disabled {
                return Err(OpError::Unchanged);
            }
            let s = stamp(ctx, floor_of(&e.disabled));
            d.disabled = Some(Lww::new(disabled, s));
            if disabled {
                revoke_all(e, &mut d, None);
            }
            s.hlc
        }
        AccountChange::PutAddress { id: aid, address } => {
            let e = account(state, &id)?;
            let existing = e.addresses.get(&aid);
            match (&address, existing) {
                // Deleting or editing needs a live address.
                (None, _) | (Some(_), Some(_)) if e.address(&aid).is_none() => {
                    return Err(OpError::Account(AccountError::AddressNotFound(aid)));
                }
                (Some(_), None) => {
                    if e.live_addresses().count() >= MAX_ADDRESSES {
                        return Err(OpError::Account(AccountError::AddressBookFull(
                            MAX_ADDRESSES,
                        )));
                    }
                    if e.addresses.len() >= MAX_ADDRESS_ENTRIES {
                        return Err(OpError::Account(AccountError::AddressBookFull(
                            MAX_ADDRESS_ENTRIES,
                        )));
                    }
                }
                _ => {}
            }
            if existing.is_some_and(|a| a.value == address) {
                return Err(OpError::Unchanged);
            }
            let floor = existing.map(|a| a.stamp.hlc).unwrap_or_default();
            let s = stamp(ctx, floor);
            d.addresses.insert(aid, Lww::new(address, s));
            s.hlc
        }
    };
    let mut out = account_delta(ctx, hlc, id, d);
    out.parts.extend(parts_extra);
    Ok(out)
}
