//! Money: ISO 4217 currencies and exact decimal amounts kept as integer minor
//! units, parsed from decimal text and never through a float.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// ISO 4217 codes we accept, with the number of minor-unit digits of each.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("GNF", 0),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("RON", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("ZAR", 2),
];

/// An ISO 4217 currency from the table this crate knows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// Why a price or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an ISO 4217 code we know.
    #[error("unknown currency {0:?}: expected an ISO 4217 code such as \"USD\"")]
    UnknownCurrency(String),
    /// The text is not a plain non-negative decimal number.
    #[error("{0:?} is not a decimal amount (expected digits with an optional '.' and fraction)")]
    NotDecimal(String),
    /// More fraction digits than the currency has.
    #[error("{currency} has {digits} decimal places, but {text:?} has more")]
    TooPrecise {
        /// The amount as given.
        text: String,
        /// The currency.
        currency: Currency,
        /// The currency's minor-unit digits.
        digits: u8,
    },
    /// The amount does not fit.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl Currency {
    /// Looks up a code (exactly three upper-case letters).
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, _)| {
                let b = c.as_bytes();
                Currency([b[0], b[1], b[2]])
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
    }

    /// The code as a string.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// How many digits the minor unit has (2 for USD, 0 for JPY, 3 for KWD).
    pub fn digits(&self) -> u8 {
        CURRENCIES
            .iter()
            .find(|(c, _)| c.as_bytes() == self.0)
            .map(|(_, d)| *d)
            .unwrap_or(2)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        Currency::new(s).map_err(serde::de::Error::custom)
    }
}

/// An exact amount: integer minor units of a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (cents for USD).
    pub minor: u64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// Parses a non-negative decimal in major units (`"2499.99"`), refusing
    /// more fraction digits than the currency has.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let not_decimal = || MoneyError::NotDecimal(text.to_string());
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, f),
            None => (text, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits_only(int)
            || !digits_only(frac)
            || (text.contains('.') && frac.is_empty())
        {
            return Err(not_decimal());
        }
        let digits = currency.digits();
        let frac_trimmed = frac.trim_end_matches('0');
        if frac_trimmed.len() > usize::from(digits) {
            return Err(MoneyError::TooPrecise {
                text: text.to_string(),
                currency,
                digits,
            });
        }
        let too_large = || MoneyError::TooLarge(text.to_string());
        let int_trimmed = int.trim_start_matches('0');
        if int_trimmed.len() > 15 {
            return Err(too_large());
        }
        let major: u64 = if int_trimmed.is_empty() {
            0
        } else {
            int_trimmed.parse().map_err(|_| not_decimal())?
        };
        let mut minor_frac: u64 = 0;
        for i in 0..usize::from(digits) {
            let d = frac_trimmed
                .as_bytes()
                .get(i)
                .map(|b| u64::from(b - b'0'))
                .unwrap_or(0);
            minor_frac = minor_frac * 10 + d;
        }
        let minor = major
            .checked_mul(10u64.pow(u32::from(digits)))
            .and_then(|m| m.checked_add(minor_frac))
            .ok_or_else(too_large)?;
        Ok(Money { minor, currency })
    }

    /// The amount as decimal text in major units, with exactly the
    /// currency's number of fraction digits (`"2499.99"`, `"1500"` for JPY).
    pub fn to_decimal(&self) -> String {
        let digits = u32::from(self.currency.digits());
        if digits == 0 {
            return self.minor.to_string();
        }
        let scale = 10u64.pow(digits);
        format!(
            "{}.{:0width$}",
            self.minor / scale,
            self.minor % scale,
            width = digits as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::new("USD").unwrap()
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Money::parse("2499.99", usd()).unwrap().minor, 249_999);
        assert_eq!(Money::parse("0.5", usd()).unwrap().minor, 50);
        assert_eq!(Money::parse("7", usd()).unwrap().minor, 700);
        assert_eq!(Money::parse("1.230", usd()).unwrap().minor, 123);
        assert_eq!(
            Money::parse("1500", Currency::new("JPY").unwrap())
                .unwrap()
                .minor,
            1500
        );
        assert_eq!(
            Money::parse("1.005", Currency::new("KWD").unwrap())
                .unwrap()
                .minor,
            1005
        );
    }

    #[test]
    fn refuses_what_is_not_an_exact_price() {
        assert!(matches!(
            Money::parse("1.999", usd()),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            Money::parse("1.5", Currency::new("JPY").unwrap()),
            Err(MoneyError::TooPrecise { .. })
        ));
        for bad in ["-1", "", ".5", "1.", "1e3", "abc", " 1", "1,00", "+1"] {
            assert!(
                matches!(Money::parse(bad, usd()), Err(MoneyError::NotDecimal(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Money::parse("99999999999999999999", usd()),
            Err(MoneyError::TooLarge(_))
        ));
        assert!(Currency::new("usd").is_err());
        assert!(Currency::new("XYZ").is_err());
    }

    #[test]
    fn formats_with_the_currency_digits() {
        assert_eq!(
            Money {
                minor: 249_999,
                currency: usd()
            }
            .to_decimal(),
            "2499.99"
        );
        assert_eq!(
            Money {
                minor: 5,
                currency: usd()
            }
            .to_decimal(),
            "0.05"
        );
        assert_eq!(
            Money {
                minor: 1500,
                currency: Currency::new("JPY").unwrap()
            }
            .to_decimal(),
            "1500"
        );
    }
}
