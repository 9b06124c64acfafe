//! Adapters that reach outside. So far: SSH (russh) and the reactor that carries out what the
//! credentials domain asks of servers. Container runtimes, registries, ACME and notifications
//! follow with their issues.

pub mod reactor;
pub mod ssh;
pub mod sshd;
