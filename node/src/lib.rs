//! # concord-node
//!
//! The `concord` binary's library: configuration, trust material and
//! tokens, sled storage with group commit, the engine that every write goes
//! through, the search replica, replication over QUIC, the HTTP API, and the
//! command line. `ARCHITECTURE.md` at the repository root follows one write
//! through all of them.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod accounts;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod engine;
pub mod events;
pub mod expiry;
pub mod http_client;
pub mod http_server;
pub mod inspect;
pub mod metrics;
pub mod notify;
pub mod payments;
pub mod pki;
pub mod replication;
pub mod sample;
pub mod search;
pub mod server;
pub mod shutdown;
pub mod storage;
