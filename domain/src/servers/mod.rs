//! Servers: the inventory every later domain builds on, and everything Unity does to one over SSH.
//!
//! One `server` stream per server holds its registration, its host key (pinned on first use or
//! given up front; a mismatch is recorded, never accepted silently), and every SSH operation as
//! a requested / succeeded-or-failed pair: connection tests, installing and removing keys in
//! the managed block of a file, and reading those blocks back to find drift. Keeping a server's
//! operations on its own stream means distributing a key to twenty servers touches twenty
//! streams that never contend, and the server's state always says what is installed where.

mod events;
mod files;
mod inventory;
pub mod managed_block;
mod server;

pub use events::*;
pub use files::*;
pub use inventory::*;
pub use server::*;

#[cfg(test)]
// Expected events are built once and cloned into each expectation: clearer than from_ref here.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests;
