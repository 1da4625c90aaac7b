//! crdt-core's test binary: lattice laws, the differential test against
//! `crdts`, the seeded multi-replica simulation, the bounded-counter model
//! test, and the codec's golden vectors and hostile inputs.

#![allow(missing_docs)]

mod answered;
mod codec;
mod counter_model;
mod laws;
mod payments;
mod repair;
mod simulation;
mod support;
