//! # crdt-core — Concord's replicated data model
//!
//! **Sans-IO.** Nothing here reads a clock, draws a random number, touches a
//! file or a socket: time is passed into every call, ids are minted by the
//! caller, and the caller persists and sends what the calls return. That
//! keeps every type deterministic and testable by simulation (see
//! `tests/simulation.rs`).
//!
//! The layers, bottom up:
//! - [`ids`], [`clock`], [`context`]: node and actor ids, the hybrid logical
//!   clock and stamps, dots, version vectors and causal contexts;
//! - [`causal`], [`orset`], [`lww`], [`status`], [`counter`]: the CRDTs —
//!   dot stores, the add-wins set and map without tombstones, the LWW
//!   register, the max-register and the bounded counter for stock; each
//!   module states its lattice laws, and `tests/laws.rs` proves them;
//! - [`money`], [`catalog`], [`cart`], [`order`], [`account`], [`idem`],
//!   [`state`]: the commerce domain on top, its accounts, and the
//!   idempotency records of its writes;
//! - [`ops`], [`delta`], [`delta_log`], [`replica`]: local operations, the
//!   deltas they make, the bounded causal log and the replica that ties it
//!   all together;
//! - [`digest`], [`keyspace`]: the hash tree over key ranges;
//! - [`codec`]: the versioned envelope used on disk and on the wire.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod account;
pub mod cart;
pub mod catalog;
pub mod causal;
pub mod clock;
pub mod codec;
pub mod context;
pub mod counter;
pub mod delta;
pub mod delta_log;
pub mod digest;
pub mod idem;
pub mod ids;
pub mod keyspace;
pub mod lww;
pub mod money;
pub mod ops;
pub mod order;
pub mod orset;
pub mod payment;
pub mod replica;
pub mod state;
pub mod status;

pub use clock::{Hlc, HlcClock, Stamp};
pub use context::{CausalContext, Dot, VersionVector};
pub use delta::{Delta, Part, RepairSnapshot};
pub use ids::{
    AccountId, Actor, AddressId, CartId, IdemKey, NodeId, OrderId, ProductId, SessionId,
};
pub use ops::{CheckoutItems, Op, OpError};
pub use replica::repair;
pub use replica::{Applied, MergeOutcome, RepairOutcome, Replica, ReplicaConfig, ReplicaMeta};
pub use state::{Key, KeyspaceId, Sku};
