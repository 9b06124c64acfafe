//! The servers domain's adapters: the russh client (`ssh`) and the SSH reactor that carries out
//! what is recorded on `server` streams.

mod reactor;
pub mod ssh;

pub use reactor::*;
