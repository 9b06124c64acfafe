//! Adapters that reach outside: SSH (russh) and the reactor that carries out what the credentials
//! domain asks of servers; ACME (instant-acme) and DNS updates (RFC 2136, webhooks) and the
//! reactor that registers accounts and carries out orders. `sshd` and `testbed` start real
//! servers on loopback for the tests and benchmarks. Container runtimes, registries and
//! notifications follow with their issues.

pub mod acme;
pub mod dns;
pub mod reactor;
pub mod ssh;
pub mod sshd;
pub mod testbed;
