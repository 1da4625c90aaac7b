//! `[accounts]` of `cluster.toml`: token lifetimes, the cost of a password
//! hash, and the limits that keep password guessing slow.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::http::in_range;

/// `[accounts]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounts {
    /// Life of an access token, seconds.
    pub access_token_secs: Option<u64>,
    /// Life of a refresh token from its issue, days.
    pub refresh_token_days: Option<u64>,
    /// How long a rotated refresh token still replays the pair it was
    /// rotated to (a client's retry), seconds.
    pub refresh_grace_secs: Option<u64>,
    /// argon2id memory cost, KiB.
    pub argon2_memory_kib: Option<u32>,
    /// argon2id passes.
    pub argon2_iterations: Option<u32>,
    /// Most password hashes computed at once on a node (default: half the
    /// cores).
    pub max_concurrent_hashes: Option<usize>,
    /// Logins allowed per client address per `login_window_secs` (0: off).
    pub login_per_address: Option<u32>,
    /// The window of `login_per_address`, seconds.
    pub login_window_secs: Option<u64>,
    /// Registrations allowed per client address per `register_window_secs`
    /// (0: off).
    pub register_per_address: Option<u32>,
    /// The window of `register_per_address`, seconds.
    pub register_window_secs: Option<u64>,
    /// Failed logins on one account (all nodes, last 15 minutes) after which
    /// it is locked until they age out.
    pub lockout_failures: Option<u32>,
    /// Failed logins (from one address, or on one account) after which
    /// every further failure is answered more slowly.
    pub delay_after_failures: Option<u32>,
}

/// The validated `[accounts]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountsConfig {
    /// Access-token life.
    pub access_token: Duration,
    /// Refresh-token life.
    pub refresh_token: Duration,
    /// Replay window of a rotated refresh token.
    pub refresh_grace: Duration,
    /// argon2id memory, KiB.
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    pub argon2_iterations: u32,
    /// Concurrent hashes per node.
    pub max_concurrent_hashes: usize,
    /// (logins, window) per address; `None`: off.
    pub login_limit: Option<(u32, Duration)>,
    /// (registrations, window) per address; `None`: off.
    pub register_limit: Option<(u32, Duration)>,
    /// Account lockout threshold.
    pub lockout_failures: u32,
    /// Where the growing delay starts.
    pub delay_after_failures: u32,
}

/// The default cap on concurrent password hashes: half the cores (at least
/// one), so a login flood leaves the other half to carts and checkouts.
fn half_the_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The window over which failed logins count toward a lockout.
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);

impl AccountsConfig {
    /// Validates `[accounts]` (absent: the defaults).
    pub fn validate(
        raw: Option<&RawAccounts>,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let empty = RawAccounts::default();
        let a = raw.unwrap_or(&empty);
        let limit = |count_field: &str,
                     count: u32,
                     window_field: &str,
                     window: u64|
         -> Result<Option<(u32, Duration)>, ConfigError> {
            if count == 0 {
                return Ok(None);
            }
            let count = in_range(invalid, count_field, count, 1, 1_000_000)?;
            let window = in_range(invalid, window_field, window, 1, 86_400)?;
            Ok(Some((count, Duration::from_secs(window))))
        };
        Ok(Self {
            access_token: Duration::from_secs(in_range(
                invalid,
                "accounts.access_token_secs",
                a.access_token_secs.unwrap_or(900),
                10,
                86_400,
            )?),
            refresh_token: Duration::from_secs(
                in_range(
                    invalid,
                    "accounts.refresh_token_days",
                    a.refresh_token_days.unwrap_or(30),
                    1,
                    365,
                )? * 86_400,
            ),
            refresh_grace: Duration::from_secs(in_range(
                invalid,
                "accounts.refresh_grace_secs",
                a.refresh_grace_secs.unwrap_or(30),
                0,
                300,
            )?),
            argon2_memory_kib: in_range(
                invalid,
                "accounts.argon2_memory_kib",
                a.argon2_memory_kib.unwrap_or(19_456),
                1_024,
                1_048_576,
            )?,
            argon2_iterations: in_range(
                invalid,
                "accounts.argon2_iterations",
                a.argon2_iterations.unwrap_or(2),
                1,
                64,
            )?,
            max_concurrent_hashes: in_range(
                invalid,
                "accounts.max_concurrent_hashes",
                a.max_concurrent_hashes.unwrap_or_else(half_the_cores),
                1,
                256,
            )?,
            login_limit: limit(
                "accounts.login_per_address",
                a.login_per_address.unwrap_or(10),
                "accounts.login_window_secs",
                a.login_window_secs.unwrap_or(900),
            )?,
            register_limit: limit(
                "accounts.register_per_address",
                a.register_per_address.unwrap_or(5),
                "accounts.register_window_secs",
                a.register_window_secs.unwrap_or(3_600),
            )?,
            lockout_failures: in_range(
                invalid,
                "accounts.lockout_failures",
                a.lockout_failures.unwrap_or(10),
                1,
                1_000_000,
            )?,
            delay_after_failures: in_range(
                invalid,
                "accounts.delay_after_failures",
                a.delay_after_failures.unwrap_or(3),
                1,
                1_000_000,
            )?,
        })
    }
}
