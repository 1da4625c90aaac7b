//! Accounts as a replica reads them: by id, by e-mail (the owner of an
//! e-mail is its first registration — see [`crate::account`]), and in pages
//! for the admin listing.

use super::Replica;
use crate::account::AccountEntry;
use crate::ids::AccountId;

impl Replica {
    /// Re-derives an account's claim on its e-mail.
    pub(super) fn reindex_account(&mut self, id: &AccountId) {
        let claim = self.state.accounts.get(id).and_then(|e| {
            e.registration
                .as_ref()
                .map(|r| (r.email.clone(), (r.created, r.writer, *id)))
        });
        self.index.set_account(*id, claim);
    }

    /// A registered account.
    pub fn account(&self, id: &AccountId) -> Option<&AccountEntry> {
        self.state
            .accounts
            .get(id)
            .filter(|e| e.registration.is_some())
    }

    /// The account that owns `email` (normalised): the first registration
    /// of it, by `(created, writer)`.
    pub fn account_by_email(&self, email: &str) -> Option<(AccountId, &AccountEntry)> {
        let (_, _, id) = *self.index.emails.get(email)?.first()?;
        self.account(&id).map(|e| (id, e))
    }

    /// Every account registered with `email`, the owner first; more than one
    /// only after concurrent registrations on two sides of a partition.
    pub fn accounts_with_email(&self, email: &str) -> Vec<AccountId> {
        self.index
            .emails
            .get(email)
            .into_iter()
            .flatten()
            .map(|(_, _, id)| *id)
            .collect()
    }

    /// Whether `id` owns its e-mail (registered, and not superseded by an
    /// earlier registration of the same e-mail).
    pub fn owns_email(&self, id: &AccountId) -> bool {
        self.account(id)
            .and_then(|e| e.email())
            .and_then(|email| self.account_by_email(email))
            .is_some_and(|(owner, _)| owner == *id)
    }

    /// Registered accounts after `after`, in the keyspace's stable order.
    pub fn accounts_after<'a>(
        &'a self,
        after: Option<&AccountId>,
    ) -> impl Iterator<Item = (&'a AccountId, &'a AccountEntry)> + 'a {
        self.state
            .accounts
            .iter_after(after)
            .filter(|(_, e)| e.registration.is_some())
    }
}
