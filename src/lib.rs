//! The `unity` binary's library half: settings, telemetry, the application wiring and the CLI
//! commands, so tests can run them in-process.

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod schedule;
pub mod telemetry;
