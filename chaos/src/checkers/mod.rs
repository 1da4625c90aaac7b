//! The checkers: pure functions from the history (and what the harness read
//! from the nodes) to a verdict. Each lives in its own module with a test
//! that feeds it a hand-made bad history and sees it fail.

pub mod audience;
pub mod bounded;
pub mod convergence;
pub mod durability;
pub mod exactly_once;
pub mod frontier;
pub mod oversell;
pub mod payments;
pub mod set_full;
pub mod stats;
pub mod unique_email;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Valid, invalid, or unknown (nothing to judge by), as Jepsen says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Validity {
    /// `true` or `false`.
    Known(bool),
    /// `"unknown"`.
    Unknown(UnknownTag),
}

/// The string `"unknown"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownTag {
    /// Unknown.
    Unknown,
}

impl Validity {
    /// Valid.
    pub const VALID: Validity = Validity::Known(true);
    /// Invalid.
    pub const INVALID: Validity = Validity::Known(false);
    /// Unknown.
    pub const UNKNOWN: Validity = Validity::Unknown(UnknownTag::Unknown);

    /// The worse of two verdicts (invalid beats unknown beats valid).
    pub fn and(self, o: Validity) -> Validity {
        match (self, o) {
            (Validity::Known(false), _) | (_, Validity::Known(false)) => Validity::INVALID,
            (Validity::Unknown(_), _) | (_, Validity::Unknown(_)) => Validity::UNKNOWN,
            _ => Validity::VALID,
        }
    }
}

/// A checker's verdict.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    /// Valid, invalid or unknown.
    pub valid: Validity,
    /// One line for humans.
    pub summary: String,
    /// Everything the checker found.
    pub details: Value,
}

/// A SKU's stock figures as one node reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Units on hand.
    pub stock: u64,
    /// Units ever restocked.
    pub restocked: u64,
    /// Units in live orders.
    pub live_sold: i64,
}

impl Inventory {
    /// The figures of a node's `/inventory/{sku}` answer, or `None` when one
    /// is missing — a sample without them would check nothing.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            stock: v["stock"].as_u64()?,
            restocked: v["restocked"].as_u64()?,
            live_sold: v["liveSold"].as_i64()?,
        })
    }
}

/// An order as read at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderRead {
    /// Its status.
    pub status: String,
    /// Units per SKU.
    pub units: BTreeMap<String, u64>,
}

/// What one node held at the end of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeRead {
    /// Products: id → SKU.
    pub products: BTreeMap<String, String>,
    /// Carts: id → (product id → quantity).
    pub carts: BTreeMap<String, BTreeMap<String, u32>>,
    /// Orders.
    pub orders: BTreeMap<String, OrderRead>,
    /// Stock per SKU.
    pub inventory: BTreeMap<String, Inventory>,
    /// The node's digest.
    pub digest: String,
}

/// The final reads of every node.
pub type FinalReads = BTreeMap<String, NodeRead>;

/// A stock sample taken during the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// ms since the start.
    pub time_ms: f64,
    /// The node.
    pub node: String,
    /// The SKU.
    pub sku: String,
    /// Its figures.
    pub inv: Inventory,
}
