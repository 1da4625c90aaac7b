//! What keeps password guessing slow, on this node: route limits for login
//! and registration per client address (GCRA buckets refilled over a
//! window: 10 logins per 15 minutes), and failed logins per address,
//! counted here and not replicated. The per-account count is replicated
//! (in the account's entry, see `crdt_core::account`), so an attacker who
//! spreads guesses over nodes meets the same lockout on each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::api::middleware::limit_key;
use crate::config::AccountsConfig;
use crate::config::accounts::LOCKOUT_WINDOW;

/// Most addresses whose failures are remembered at once (the oldest window
/// is forgotten first when full).
const MAX_TRACKED: usize = 100_000;

/// Login and registration limits, and failures per address.
pub struct Guard {
    login: Option<DefaultKeyedRateLimiter<IpAddr>>,
    register: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Address → (window start ms, failures in it).
    failures: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

fn windowed(limit: Option<(u32, Duration)>) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    let (count, window) = limit?;
    let count = NonZeroU32::new(count)?;
    let period = window / count.get();
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(count);
    Some(RateLimiter::keyed(quota))
}

fn take(l: &Option<DefaultKeyedRateLimiter<IpAddr>>, ip: IpAddr) -> Result<(), u64> {
    let Some(l) = l else { return Ok(()) };
    l.check_key(&limit_key(ip)).map_err(|not_until| {
        not_until
            .wait_time_from(DefaultClock::default().now())
            .as_secs()
            .max(1)
    })
}

impl Guard {
    /// The limits of `[accounts]`.
    pub fn new(cfg: &AccountsConfig) -> Self {
        Self {
            login: windowed(cfg.login_limit),
            register: windowed(cfg.register_limit),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one login from `ip`'s allowance, or the seconds to wait.
    pub fn login(&self, ip: IpAddr) -> Result<(), u64> {
        take(&self.login, ip)
    }

    /// Takes one registration from `ip`'s allowance, or the seconds to wait.
    pub fn register(&self, ip: IpAddr) -> Result<(), u64> {
        take(&self.register, ip)
    }

    /// Failed logins from `ip` in the current window.
    pub fn failures(&self, ip: IpAddr, now_ms: u64) -> u32 {
        let g = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match g.get(&limit_key(ip)) {
            Some((start, n)) if now_ms < start + LOCKOUT_WINDOW.as_millis() as u64 => *n,
            _ => 0,
        }
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr, now_ms: u64) {
        let window = LOCKOUT_WINDOW.as_millis() as u64;
        let mut g = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX_TRACKED {
            g.retain(|_, (start, _)| now_ms < *start + window);
        }
        if g.len() >= MAX_TRACKED {
            return;
        }
        let e = g.entry(limit_key(ip)).or_insert((now_ms, 0));
        if now_ms >= e.0 + window {
            *e = (now_ms, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    /// Forgets expired windows and idle buckets (the node's housekeeping).
    pub fn prune(&self, now_ms: u64) {
        let window = LOCKOUT_WINDOW.as_millis() as u64;
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (start, _)| now_ms < *start + window);
        for l in [&self.login, &self.register].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// How long to hold an attempt after `failures` recent failures: nothing up
/// to `after`, then 250 ms doubling per failure, at most 8 s.
pub fn delay_for(failures: u32, after: u32) -> Duration {
    if failures < after {
        return Duration::ZERO;
    }
    let steps = (failures - after).min(5);
    Duration::from_millis(250u64 << steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_per_address_within_the_window() {
        let cfg = crate::config::AccountsConfig::validate(None, &|f, m| {
            crate::config::ConfigError::Invalid {
                path: "t".into(),
                field: f.into(),
                message: m,
            }
        })
        .expect("defaults");
        let g = Guard::new(&cfg);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..3 {
            g.failed(ip, 1_000);
        }
        assert_eq!(g.failures(ip, 2_000), 3);
        assert_eq!(g.failures("10.0.0.2".parse().expect("ip"), 2_000), 0);
        let later = 1_000 + LOCKOUT_WINDOW.as_millis() as u64;
        assert_eq!(g.failures(ip, later), 0);
        // Ten logins per window, then refused.
        for _ in 0..10 {
            assert!(g.login(ip).is_ok());
        }
        assert!(g.login(ip).is_err());
        assert_eq!(delay_for(2, 3), Duration::ZERO);
        assert_eq!(delay_for(3, 3), Duration::from_millis(250));
        assert_eq!(delay_for(100, 3), Duration::from_secs(8));
    }
}
