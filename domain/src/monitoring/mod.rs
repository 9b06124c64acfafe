//! Monitoring: what Unity reads from servers over SSH, without an agent on them.
//!
//! `sample` is the compact payload one poll records (the bulk of the event log, in the samples
//! retention class) and `samples` its stream, one per server per day; `summaries` rolls each
//! hour of samples up into the longer-lived summaries class; `storage` is the state of
//! disks, pools and arrays, and `watch` the per-server aggregate that records how a server is
//! watched and each change seen in it, once; `checks` are the Nagios-compatible plugins Unity
//! runs on servers.

mod checks;
mod sample;
mod samples;
mod storage;
mod summaries;
mod watch;

pub use checks::*;
pub use sample::*;
pub use samples::*;
pub use storage::*;
pub use summaries::*;
pub use watch::*;

#[cfg(test)]
// Expected events are built once and cloned into each expectation: clearer than from_ref here.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests;
