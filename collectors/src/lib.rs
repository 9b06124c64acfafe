//! Adapters that reach outside, one folder per domain: `servers` (SSH with russh, and the reactor
//! that carries out what the servers domain asks of servers), `acme` (instant-acme, DNS updates by
//! RFC 2136 or webhook, and the reactor that registers accounts and carries out orders).
//! `reactor` is the run loop every reactor shares. `testing` (feature `testing`) starts real
//! servers on loopback for the tests and benchmarks.

pub mod acme;
pub mod monitoring;
pub mod reactor;
pub mod servers;

#[cfg(feature = "testing")]
pub mod testing;
