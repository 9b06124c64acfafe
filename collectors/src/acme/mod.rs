//! The ACME domain's adapters: the reactor that registers accounts and carries out orders
//! (instant-acme), and DNS updates for DNS-01 (`dns`: RFC 2136 with TSIG, written by hand).

pub mod dns;
mod reactor;

pub use reactor::*;
