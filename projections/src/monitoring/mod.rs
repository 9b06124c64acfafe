//! Monitoring as the API reads it: per server its configuration, status, facts and latest
//! sample; per disk, pool and array its latest state; and the history of changes.
//!
//! The raw time series is not copied: a day of one server's samples is one `host_samples`
//! stream, which `queries::samples` reads by the log's stream key.
//! A copy would double the bytes of every sample for the same numbers (ARCHITECTURE.md,
//! "Monitoring"). Samples are folded here in SQL, one statement per batch (the latest sample
//! per server, the latest reading per disk); the rare state changes are applied in Rust.

mod apply;
mod checks;
mod queries;

pub use checks::{check, checks, perfdata, server_checks, CheckRow, ServerCheck};
pub use queries::*;

use futures::future::BoxFuture;
use sqlx::PgConnection;
use unity_domain::{
    monitoring::{CheckEvent, MonitoringEvent},
    DomainEvent,
};

use crate::engine::{ApplyError, Batch, Projection};

pub struct MonitoringProjection;

impl Projection for MonitoringProjection {
    fn name(&self) -> &'static str {
        "monitoring"
    }

    fn model_version(&self) -> i32 {
        // 2: checks (their definitions, each server's latest result).
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "monitored_servers",
            "monitored_devices",
            "monitored_pools",
            "monitored_arrays",
            "monitoring_changes",
            "monitoring_checks",
            "monitored_checks",
        ]
    }

    fn create_tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE monitored_servers (
                server_id      uuid        PRIMARY KEY,
                config         jsonb,
                status         text        NOT NULL DEFAULT 'UNKNOWN',
                last_error     text,
                failing_since  timestamptz,
                facts          jsonb,
                last_sample_at timestamptz,
                last_sample    jsonb)",
            "CREATE TABLE monitored_devices (
                server_id  uuid        NOT NULL,
                serial     text        NOT NULL,
                device     jsonb       NOT NULL,
                verdict    text        NOT NULL,
                reasons    jsonb       NOT NULL,
                first_seen jsonb       NOT NULL,
                overrides  jsonb       NOT NULL DEFAULT '{}',
                read_at    timestamptz NOT NULL,
                PRIMARY KEY (server_id, serial))",
            "CREATE TABLE monitored_pools (
                server_id  uuid        NOT NULL,
                kind       text        NOT NULL,
                name       text        NOT NULL,
                pool       jsonb       NOT NULL,
                verdict    text        NOT NULL,
                changed_at timestamptz NOT NULL,
                PRIMARY KEY (server_id, kind, name))",
            "CREATE TABLE monitored_arrays (
                server_id  uuid        NOT NULL,
                name       text        NOT NULL,
                array_state jsonb      NOT NULL,
                verdict    text        NOT NULL,
                changed_at timestamptz NOT NULL,
                PRIMARY KEY (server_id, name))",
            "CREATE TABLE monitoring_changes (
                global_position bigint      PRIMARY KEY,
                server_id       uuid        NOT NULL,
                at              timestamptz NOT NULL,
                kind            text        NOT NULL,
                subject         text        NOT NULL,
                verdict         text,
                summary         text        NOT NULL)",
            checks::TABLES[0],
            checks::TABLES[1],
        ]
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        &["CREATE INDEX monitoring_changes_by_server ON monitoring_changes (server_id, at DESC)"]
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&[MonitoringEvent::STREAM_TYPE, CheckEvent::STREAM_TYPE])
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(apply::apply(conn, batch))
    }
}

#[cfg(test)]
mod tests;
