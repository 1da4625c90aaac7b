//! The node's wall clock: system time plus an optional offset, the knob the
//! chaos harness turns to skew one node's clock without touching the others
//! (they share one kernel). All node code reads time through here.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// The environment variable that sets the offset at start-up.
pub const SKEW_ENV: &str = "CONCORD_CLOCK_SKEW_MS";

/// Reads the offset from [`SKEW_ENV`], if set.
pub fn init_from_env() {
    if let Some(ms) = std::env::var(SKEW_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        set_offset_ms(ms);
    }
}

/// Sets the offset added to the system clock.
pub fn set_offset_ms(ms: i64) {
    OFFSET_MS.store(ms, Ordering::Relaxed);
}

/// The offset in force.
pub fn offset_ms() -> i64 {
    OFFSET_MS.load(Ordering::Relaxed)
}

/// Wall time in milliseconds since the Unix epoch, skewed by the offset.
pub fn now_ms() -> u64 {
    let sys = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    (sys + offset_ms()).max(0) as u64
}

/// Wall time in seconds.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// RFC 3339 text (UTC, millisecond precision) for a Unix time in ms.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_080_000_123), "2025-11-25T14:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
