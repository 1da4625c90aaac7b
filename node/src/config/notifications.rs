//! `[notifications]` of `cluster.toml`: order e-mails to the customer
//! through an SMTP relay. Off unless `smtp_relay` is set.

use serde::Deserialize;

use super::ConfigError;

/// `[notifications]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// `host:port` of the relay; absent: no e-mails.
    pub smtp_relay: Option<String>,
    /// The sender, `Shop <shop@example.com>`.
    pub from: Option<String>,
    /// Upgrade the relay connection with STARTTLS (rustls; the relay's
    /// certificate must chain to a public root).
    pub starttls: Option<bool>,
}

/// The validated `[notifications]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NotificationsConfig {
    /// The relay's host and port; `None`: e-mails are off.
    pub relay: Option<(String, u16)>,
    /// The sender.
    pub from: String,
    /// Whether to STARTTLS.
    pub starttls: bool,
}

impl NotificationsConfig {
    /// Validates `[notifications]` (absent: off).
    pub fn validate(
        raw: Option<&RawNotifications>,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let Some(n) = raw else {
            return Ok(Self::default());
        };
        let relay = match &n.smtp_relay {
            None => None,
            Some(r) => {
                let (host, port) = r.rsplit_once(':').ok_or_else(|| {
                    invalid(
                        "notifications.smtp_relay",
                        format!("{r:?} must be host:port"),
                    )
                })?;
                let port: u16 = port.parse().map_err(|_| {
                    invalid("notifications.smtp_relay", format!("{r:?} has a bad port"))
                })?;
                if host.is_empty() || port == 0 {
                    return Err(invalid(
                        "notifications.smtp_relay",
                        format!("{r:?} must be host:port"),
                    ));
                }
                Some((host.to_string(), port))
            }
        };
        let from = n.from.clone().unwrap_or_default();
        if relay.is_some() && from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "notifications.from",
                format!("{from:?} must be a mailbox such as \"Shop <shop@example.com>\""),
            ));
        }
        Ok(Self {
            relay,
            from,
            starttls: n.starttls.unwrap_or(false),
        })
    }
}
