//! Monitoring: what Unity reads from servers over SSH, without an agent on them.
//!
//! `sample` is the compact payload one poll records (the bulk of the event log, in the samples
//! retention class); `storage` is the state of disks, pools and arrays, recorded when it changes.

mod sample;
mod storage;

pub use sample::*;
pub use storage::*;
