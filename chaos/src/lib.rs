//! # concord-chaos
//!
//! The library behind the `concord-chaos` harness, also used by the
//! integration tests: real node processes on free ports ([`procs`]) and a
//! UDP fault proxy in front of each gossip port ([`proxy`]).

#![forbid(unsafe_code)]

pub mod procs;
pub mod proxy;
