//! Monitoring's adapters: the poll script run over SSH and the pure parsers that turn what it
//! prints into samples and storage state, and checks (Nagios-compatible plugins). Each parser is tested against the real outputs in
//! `../shared/fixtures` (proc, mdstat, mdadm, zfs, smartctl) and the project's own samples.

pub mod btrfs;
pub mod checks;
pub mod collect;
pub mod collector;
pub mod lvm;
pub mod mdadm;
pub mod poll;
pub mod proc;
pub mod rates;
pub mod smart;
pub mod zfs;

#[cfg(test)]
mod tests;

/// Output Unity could not read: which source, and what was wrong with it, in words (never a
/// parser's internal message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {problem}")]
pub struct ParseError {
    pub source_name: &'static str,
    pub problem: String,
}

impl ParseError {
    pub fn new(source_name: &'static str, problem: impl Into<String>) -> ParseError {
        ParseError { source_name, problem: problem.into() }
    }
}
