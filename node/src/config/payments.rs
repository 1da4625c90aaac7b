//! `[payments]` of `cluster.toml`: which provider charges orders, when the
//! amount is captured, how long a provider call may take, and the secret
//! that signs the provider's webhooks.

use std::path::Path;
use std::time::Duration;

use crdt_core::payment::CaptureMode;
use serde::Deserialize;

use super::ConfigError;
use super::http::in_range;

/// `[payments]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPayments {
    /// `test` (in-process, deterministic; the default) or `stripe`.
    pub provider: Option<String>,
    /// Stripe: a file holding the secret API key (`sk_…`).
    pub secret_key_file: Option<String>,
    /// Stripe: where its API is (`https://api.stripe.com`; a local fake for
    /// tests, `http://127.0.0.1:…`).
    pub api_base: Option<String>,
    /// `immediate` (the confirmation captures) or `on_ship` (the seller
    /// captures when it ships).
    pub capture: Option<String>,
    /// Longest wait for one provider call, milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// A file holding the secret that signs the provider's webhooks
    /// (`Stripe-Signature`); without it, provider webhooks are refused.
    pub webhook_secret_file: Option<String>,
    /// Test provider: delay before each call it carries out (replays are
    /// answered at once), milliseconds.
    pub test_latency_ms: Option<u64>,
    /// Test provider: every n-th call fails as a provider outage would,
    /// before doing anything (0: never).
    pub test_fail_every: Option<u32>,
}

/// The payment provider adapters this build has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// In-process and deterministic: Stripe's test cards decide.
    Test,
    /// Stripe's REST API.
    Stripe,
}

impl ProviderKind {
    /// Its name in the config, the API and the attempt.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Test => "test",
            ProviderKind::Stripe => "stripe",
        }
    }
}

/// The validated `[payments]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentsConfig {
    /// Whether the file has a `[payments]` section: then customers can no
    /// longer mark their orders paid with `/pay`; they pay.
    pub configured: bool,
    /// The provider.
    pub provider: ProviderKind,
    /// When to capture.
    pub capture: CaptureMode,
    /// Longest wait for one provider call.
    pub call_timeout: Duration,
    /// The webhook signing secret.
    pub webhook_secret: Option<Vec<u8>>,
    /// Stripe's secret API key (for `stripe`).
    pub secret_key: Option<String>,
    /// Stripe's API base.
    pub api_base: String,
    /// Test provider latency.
    pub test_latency: Duration,
    /// Test provider failure period (0: never).
    pub test_fail_every: u32,
}

impl PaymentsConfig {
    /// Validates `[payments]` (absent: the test provider, immediate
    /// capture, and `/pay` still open to customers); `base` anchors a
    /// relative secret file.
    pub fn validate(
        raw: Option<&RawPayments>,
        base: &Path,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let empty = RawPayments::default();
        let p = raw.unwrap_or(&empty);
        let provider = match p.provider.as_deref().unwrap_or("test") {
            "test" => ProviderKind::Test,
            "stripe" => ProviderKind::Stripe,
            other => {
                return Err(invalid(
                    "payments.provider",
                    format!("{other:?} is not a provider this build has (test, stripe)"),
                ));
            }
        };
        let capture = match p.capture.as_deref().unwrap_or("immediate") {
            "immediate" => CaptureMode::Immediate,
            "on_ship" => CaptureMode::OnShip,
            other => {
                return Err(invalid(
                    "payments.capture",
                    format!("{other:?} must be immediate or on_ship"),
                ));
            }
        };
        let secret_in = |field: &str, f: &Option<String>| -> Result<Option<String>, ConfigError> {
            let Some(f) = f else { return Ok(None) };
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))?;
            let secret = text.trim().to_string();
            if secret.len() < 16 {
                return Err(invalid(
                    field,
                    format!("{} holds fewer than 16 characters", path.display()),
                ));
            }
            Ok(Some(secret))
        };
        let webhook_secret = secret_in("payments.webhook_secret_file", &p.webhook_secret_file)?
            .map(String::into_bytes);
        let secret_key = secret_in("payments.secret_key_file", &p.secret_key_file)?;
        if provider == ProviderKind::Stripe && secret_key.is_none() {
            return Err(invalid(
                "payments.secret_key_file",
                "is required with provider = \"stripe\"".into(),
            ));
        }
        let api_base = p
            .api_base
            .clone()
            .unwrap_or_else(|| "https://api.stripe.com".to_string());
        if let Err(e) = crate::payments::stripe::Stripe::new(&api_base, String::new()) {
            return Err(invalid("payments.api_base", e));
        }
        Ok(Self {
            configured: raw.is_some(),
            provider,
            capture,
            call_timeout: Duration::from_millis(in_range(
                invalid,
                "payments.call_timeout_ms",
                p.call_timeout_ms.unwrap_or(10_000),
                100,
                120_000,
            )?),
            webhook_secret,
            secret_key,
            api_base,
            test_latency: Duration::from_millis(in_range(
                invalid,
                "payments.test_latency_ms",
                p.test_latency_ms.unwrap_or(0),
                0,
                120_000,
            )?),
            test_fail_every: in_range(
                invalid,
                "payments.test_fail_every",
                p.test_fail_every.unwrap_or(0),
                0,
                1_000_000,
            )?,
        })
    }
}
