//! A replica's idempotency records: reading one, filing each change for
//! expiry, and the local sweep that drops those past their window — oldest
//! first, in O(what expires), by the (HLC ms, key) filing.

use super::Replica;
use crate::idem::IdemRecord;
use crate::ids::IdemKey;
use crate::state::Key;

impl Replica {
    /// The idempotency record of `key`, unless it has expired by `now_ms`.
    pub fn idem_record(&self, key: &IdemKey, now_ms: u64) -> Option<&IdemRecord> {
        self.state
            .idem
            .get(key)
            .filter(|e| !e.expired(now_ms, self.idem_window_ms))
            .and_then(|e| e.0.as_ref())
    }

    /// Files a changed idempotency record for expiry — or, when it has
    /// expired already, drops it: an expired record is absent, wherever it
    /// comes from (a late delta, a repair from a node that has not swept).
    pub(crate) fn note_idem(&mut self, key: &IdemKey) {
        let now = self.clock.last().ms;
        let window = self.idem_window_ms;
        match self.state.idem.get(key) {
            Some(e) if e.expired(now, window) => {
                self.state.forget_idem(key);
            }
            Some(e) => {
                if let Some(rec) = &e.0 {
                    self.idem_expiry.insert((rec.hlc.ms, *key));
                }
            }
            None => {}
        }
    }

    /// How long idempotency records are kept, by their HLC.
    pub fn idem_window_ms(&self) -> u64 {
        self.idem_window_ms
    }

    /// Drops up to `max` idempotency records past their window at `now_ms`
    /// (the local expiry sweep), oldest first; returns their keys, to delete
    /// from disk. Costs O(max · log n) whatever the number of records.
    pub fn sweep_idem(&mut self, now_ms: u64, max: usize) -> Vec<Key> {
        let window = self.idem_window_ms;
        let mut out = Vec::new();
        let mut looked = 0;
        while looked < max {
            let Some(&(ms, key)) = self.idem_expiry.first() else {
                break;
            };
            if ms.saturating_add(window) >= now_ms {
                break;
            }
            self.idem_expiry.pop_first();
            looked += 1;
            // A stale filing (the record was replaced or is gone) is skipped.
            let current = self.state.idem.get(&key).and_then(|e| e.0.as_ref());
            if current.is_some_and(|r| r.hlc.ms == ms) && self.state.forget_idem(&key) {
                out.push(Key::Idem(key));
            }
        }
        out
    }
}
