//! Concord's integration tests: the HTTP API against an in-process node,
//! and real `concord node` processes for durability and replication.

#![allow(missing_docs)]

mod accounts;
mod accounts_cluster;
mod api;
mod api_shapes;
mod browser;
mod config_cli;
mod durability;
mod idempotency;
mod notifications;
mod payments;
mod payments_cluster;
mod payments_stripe;
mod replication;
mod search;
mod security;
mod security_conns;
mod security_peers;
mod self_repair;
mod stripe_fake;
