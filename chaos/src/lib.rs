//! # concord-chaos
//!
//! The library behind the `concord-chaos` harness (also used by the
//! integration tests and the benchmarks): real node processes on free ports
//! ([`procs`]), a UDP fault proxy in front of each gossip port ([`proxy`]),
//! the workload ([`workload`]), the nemesis ([`nemesis`], with a hostile client in [`hostile`]), the
//! audience probes ([`audience`]), the history
//! ([`history`]), pure checkers ([`checkers`]), the report ([`report`]) and
//! the run that ties them together ([`run`]).

#![forbid(unsafe_code)]

pub mod audience;
pub mod checkers;
pub mod contended;
pub mod disks;
pub mod faults;
pub mod history;
pub mod hostile;
pub mod lazyfs;
pub mod loadgen;
pub mod nemesis;
pub mod observe;
pub mod payer;
pub mod procs;
pub mod proxy;
pub mod registrar;
pub mod report;
pub mod retrying;
pub mod run;
pub mod workload;
