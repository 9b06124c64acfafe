//! SSH keys, SSH CAs and their certificates, server credentials and the unused-keys report, as
//! the API reads them; and, in the same projection, the servers domain's tables (see
//! `crate::servers`): one checkpoint and one transaction per batch over both, because a server's
//! login and installations name keys and credentials, and rotation moves both at once.

use crate::engine::{ApplyError, Batch, Projection};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::PgConnection;
use unity_domain::{
    credentials::{ServerCredentialEvent, SshCaEvent, SshKeyEvent},
    servers::ServerEvent,
    DomainEvent, StreamId,
};

mod apply;
mod queries;

pub use queries::*;

use crate::servers::apply::apply_server;
use apply::{apply_ca, apply_credential, apply_key, apply_report};

pub struct CredentialsProjection;

impl Projection for CredentialsProjection {
    fn name(&self) -> &'static str {
        "credentials"
    }

    fn model_version(&self) -> i32 {
        // 4: hasPrivateKey turns false when deletion shreds the private half.
        4
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "ssh_keys",
            "ssh_cas",
            "ssh_certificates",
            "server_credentials",
            "servers",
            "ssh_requests",
            "ssh_installations",
            "ssh_key_reports",
            "certificate_deployments",
        ]
    }

    fn create_tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE ssh_keys (
                key_id       uuid        PRIMARY KEY,
                name         text        NOT NULL,
                algorithm    text        NOT NULL,
                bits         integer     NOT NULL,
                fingerprint  text        NOT NULL,
                public_key   text        NOT NULL,
                comment      text        NOT NULL,
                tags         text[]      NOT NULL,
                origin       text        NOT NULL,
                rotated_from uuid,
                replaced_by  uuid,
                has_private_key boolean  NOT NULL,
                created_at   timestamptz NOT NULL,
                last_used_at timestamptz,
                deleted_at   timestamptz)",
            "CREATE TABLE ssh_cas (
                ca_id        uuid        PRIMARY KEY,
                name         text        NOT NULL,
                algorithm    text        NOT NULL,
                fingerprint  text        NOT NULL,
                public_key   text        NOT NULL,
                created_at   timestamptz NOT NULL,
                certificates bigint      NOT NULL DEFAULT 0)",
            "CREATE TABLE ssh_certificates (
                ca_id        uuid        NOT NULL,
                serial       bigint      NOT NULL,
                cert_type    text        NOT NULL,
                key_id       text        NOT NULL,
                principals   text[]      NOT NULL,
                valid_after  timestamptz NOT NULL,
                valid_before timestamptz NOT NULL,
                extensions   text[]      NOT NULL,
                critical_options jsonb   NOT NULL,
                subject_fingerprint text NOT NULL,
                signed_at    timestamptz NOT NULL,
                signed_by    text        NOT NULL,
                PRIMARY KEY (ca_id, serial))",
            "CREATE TABLE server_credentials (
                credential_id uuid       PRIMARY KEY,
                name         text        NOT NULL,
                kind         text        NOT NULL,
                username     text        NOT NULL,
                created_at   timestamptz NOT NULL,
                updated_at   timestamptz NOT NULL,
                deleted_at   timestamptz)",
            "CREATE TABLE servers (
                server_id    uuid        PRIMARY KEY,
                name         text        NOT NULL,
                address      text        NOT NULL,
                port         integer     NOT NULL,
                username     text        NOT NULL,
                auth_kind    text        NOT NULL,
                auth_id      uuid        NOT NULL,
                authorized_keys_file text NOT NULL,
                tags         text[]      NOT NULL,
                host_key     text,
                host_key_status text     NOT NULL,
                presented_host_key text,
                os           text,
                kernel       text,
                hostname     text,
                rtt_ms       double precision,
                last_test_at timestamptz,
                last_test_error text,
                drift        jsonb       NOT NULL DEFAULT '[]',
                certificate_drift jsonb  NOT NULL DEFAULT '[]',
                last_checked_at timestamptz,
                registered_at timestamptz NOT NULL,
                removed_at   timestamptz)",
            "CREATE TABLE ssh_requests (
                request_id   uuid        PRIMARY KEY,
                server_id    uuid        NOT NULL,
                kind         text        NOT NULL,
                file         jsonb,
                entry_id     uuid,
                fingerprint  text,
                state        text        NOT NULL,
                error        text,
                requested_at timestamptz NOT NULL,
                finished_at  timestamptz)",
            // One row per stay of a key in a file: installed, and removed (or still there).
            "CREATE TABLE ssh_installations (
                server_id    uuid        NOT NULL,
                file         jsonb       NOT NULL,
                entry_kind   text        NOT NULL,
                entry_id     uuid        NOT NULL,
                fingerprint  text        NOT NULL,
                installed_at timestamptz NOT NULL,
                removed_at   timestamptz)",
            // What is deployed where now (one row per server and certificate path).
            "CREATE TABLE certificate_deployments (
                server_id    uuid        NOT NULL,
                cert_path    text        NOT NULL,
                certificate_id uuid      NOT NULL,
                deployment   jsonb       NOT NULL,
                fingerprint  text        NOT NULL,
                reload_exit_status integer,
                deployed_at  timestamptz NOT NULL,
                PRIMARY KEY (server_id, cert_path))",
            "CREATE TABLE ssh_key_reports (
                reported_at  timestamptz NOT NULL,
                unused_days  integer     NOT NULL,
                keys         jsonb       NOT NULL)",
        ]
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        &[
            "CREATE INDEX ssh_requests_by_server ON ssh_requests (server_id, requested_at)",
            "CREATE INDEX ssh_installations_by_entry ON ssh_installations (entry_id, installed_at)",
            "CREATE INDEX ssh_installations_by_server ON ssh_installations (server_id) WHERE removed_at IS NULL",
        ]
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            SshKeyEvent::STREAM_TYPE,
            SshCaEvent::STREAM_TYPE,
            ServerCredentialEvent::STREAM_TYPE,
            ServerEvent::STREAM_TYPE,
            unity_domain::credentials::SshKeyReportEvent::STREAM_TYPE,
        ])
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in batch.events {
                let id = e
                    .stream_id
                    .parse::<StreamId>()
                    .map_err(|reason| ApplyError::Poison { event_id: e.event_id, reason })?
                    .id();
                match e.stream_type.as_str() {
                    SshKeyEvent::STREAM_TYPE => apply_key(conn, e, id).await?,
                    SshCaEvent::STREAM_TYPE => apply_ca(conn, e, id).await?,
                    ServerCredentialEvent::STREAM_TYPE => apply_credential(conn, e, id).await?,
                    ServerEvent::STREAM_TYPE => apply_server(conn, e, id).await?,
                    unity_domain::credentials::SshKeyReportEvent::STREAM_TYPE => apply_report(conn, e).await?,
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("domain values serialize")
}
