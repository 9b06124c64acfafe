//! Unity's domain: events, commands and aggregates as pure deciders. No IO, no async.
//!
//! Everything outside the process (the time, random ids, a password's hash, a collector's
//! reading) reaches a decider through its command, so every decision is a pure function that
//! the given/when/then tests in each module exercise without a database.

pub mod acme;
pub mod credentials;
pub mod decider;
pub mod event;
pub mod identity;
pub mod monitoring;

pub mod certificates;
pub mod retention;
pub mod schema;
pub mod servers;

pub use decider::{Decider, Refusal, Refuse};
pub use event::{Actor, DomainEvent, EventMetadata, SecretRef, StreamId};
