//! SSH keys, SSH CAs and their certificates, server credentials, servers, the requests carried out
//! on servers, and where every key is (and was) installed, as the API reads them.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use unity_commands::store::RecordedEvent;
use unity_domain::{
    credentials::{KeyOrigin, ServerCredentialEvent, SshCaEvent, SshKeyEvent},
    servers::{ManagedEntry, ManagedFile, ServerAuth, ServerEvent, ServerSpec},
    DomainEvent, StreamId,
};
use uuid::Uuid;

use crate::engine::{ApplyError, Batch, Projection};

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

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("domain values serialize")
}

async fn apply_key(conn: &mut PgConnection, e: &RecordedEvent, key_id: Uuid) -> Result<(), ApplyError> {
    match e.decode::<SshKeyEvent>()? {
        SshKeyEvent::SshKeyCreated { name, origin, key, comment, tags, private_key, .. } => {
            let (origin, from) = match origin {
                KeyOrigin::Generated => ("GENERATED", None),
                KeyOrigin::Imported => ("IMPORTED", None),
                KeyOrigin::Rotated { from } => ("ROTATED", Some(from)),
            };
            sqlx::query(
                "INSERT INTO ssh_keys (key_id, name, algorithm, bits, fingerprint, public_key, comment, tags, origin, \
                 rotated_from, has_private_key, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) \
                 ON CONFLICT (key_id) DO NOTHING",
            )
            .bind(key_id)
            .bind(name)
            .bind(key.algorithm.as_str())
            .bind(key.bits as i32)
            .bind(key.fingerprint)
            .bind(key.public_key)
            .bind(comment)
            .bind(tags)
            .bind(origin)
            .bind(from)
            .bind(private_key.is_some())
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        SshKeyEvent::SshKeyUsed { last_used_at, .. } => {
            sqlx::query("UPDATE ssh_keys SET last_used_at = greatest(last_used_at, $2) WHERE key_id = $1")
                .bind(key_id)
                .bind(last_used_at)
                .execute(&mut *conn)
                .await?;
        }
        SshKeyEvent::SshKeyRotated { replaced_by } => {
            sqlx::query("UPDATE ssh_keys SET replaced_by = $2 WHERE key_id = $1")
                .bind(key_id)
                .bind(replaced_by)
                .execute(&mut *conn)
                .await?;
        }
        SshKeyEvent::SshKeyDeleted { private_key_shredded } => {
            // A shredded private half is gone for good: say so, not what was once true.
            sqlx::query(
                "UPDATE ssh_keys SET deleted_at = coalesce(deleted_at, $2), \
                 has_private_key = has_private_key AND NOT $3 WHERE key_id = $1",
            )
            .bind(key_id)
            .bind(e.recorded_at)
            .bind(private_key_shredded)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_ca(conn: &mut PgConnection, e: &RecordedEvent, ca_id: Uuid) -> Result<(), ApplyError> {
    match e.decode::<SshCaEvent>()? {
        SshCaEvent::SshCaCreated { name, key, .. } => {
            sqlx::query(
                "INSERT INTO ssh_cas (ca_id, name, algorithm, fingerprint, public_key, created_at) \
                 VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (ca_id) DO NOTHING",
            )
            .bind(ca_id)
            .bind(name)
            .bind(key.algorithm.as_str())
            .bind(key.fingerprint)
            .bind(key.public_key)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        SshCaEvent::SshCertificateSigned { serial, request, subject_fingerprint } => {
            let signed_by = e.metadata.pointer("/actor/name").and_then(Value::as_str).unwrap_or("").to_owned();
            sqlx::query(
                "INSERT INTO ssh_certificates (ca_id, serial, cert_type, key_id, principals, valid_after, valid_before, \
                 extensions, critical_options, subject_fingerprint, signed_at, signed_by) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING",
            )
            .bind(ca_id)
            .bind(serial as i64)
            .bind(json(&request.cert_type).as_str().unwrap_or_default().to_owned())
            .bind(request.key_id)
            .bind(request.principals)
            .bind(request.valid_after)
            .bind(request.valid_before)
            .bind(request.extensions)
            .bind(json(&request.critical_options))
            .bind(subject_fingerprint)
            .bind(e.recorded_at)
            .bind(signed_by)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE ssh_cas SET certificates = greatest(certificates, $2) WHERE ca_id = $1")
                .bind(ca_id)
                .bind(serial as i64)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn apply_credential(conn: &mut PgConnection, e: &RecordedEvent, id: Uuid) -> Result<(), ApplyError> {
    match e.decode::<ServerCredentialEvent>()? {
        ServerCredentialEvent::ServerCredentialCreated { name, kind, username, .. } => {
            sqlx::query(
                "INSERT INTO server_credentials (credential_id, name, kind, username, created_at, updated_at) \
                 VALUES ($1,$2,$3,$4,$5,$5) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(json(&kind).as_str().unwrap_or_default().to_owned())
            .bind(username)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        ServerCredentialEvent::ServerCredentialUpdated { name, username, .. } => {
            sqlx::query(
                "UPDATE server_credentials SET name = coalesce($2, name), username = coalesce($3, username), \
                 updated_at = $4 WHERE credential_id = $1",
            )
            .bind(id)
            .bind(name)
            .bind(username)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        ServerCredentialEvent::ServerCredentialDeleted {} => {
            sqlx::query("UPDATE server_credentials SET deleted_at = coalesce(deleted_at, $2) WHERE credential_id = $1")
                .bind(id)
                .bind(e.recorded_at)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

fn auth_parts(auth: &ServerAuth) -> (&'static str, Uuid) {
    match auth {
        ServerAuth::SshKey { key_id } => ("SSH_KEY", *key_id),
        ServerAuth::Credential { credential_id } => ("CREDENTIAL", *credential_id),
    }
}

async fn upsert_server(
    conn: &mut PgConnection,
    server_id: Uuid,
    spec: &ServerSpec,
    host_key: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let (auth_kind, auth_id) = auth_parts(&spec.authentication);
    sqlx::query(
        "INSERT INTO servers (server_id, name, address, port, username, auth_kind, auth_id, authorized_keys_file, tags, \
         host_key, host_key_status, registered_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10, \
         CASE WHEN $10::text IS NULL THEN 'UNKNOWN' ELSE 'PINNED' END, $11) \
         ON CONFLICT (server_id) DO UPDATE SET name = $2, address = $3, port = $4, username = $5, auth_kind = $6, \
         auth_id = $7, authorized_keys_file = $8, tags = $9",
    )
    .bind(server_id)
    .bind(&spec.name)
    .bind(&spec.address)
    .bind(spec.port as i32)
    .bind(&spec.username)
    .bind(auth_kind)
    .bind(auth_id)
    .bind(&spec.authorized_keys_file)
    .bind(&spec.tags)
    .bind(host_key)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn open_request(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    server_id: Uuid,
    request_id: Uuid,
    kind: &str,
    target: Option<(&ManagedFile, &ManagedEntry)>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ssh_requests (request_id, server_id, kind, file, entry_id, fingerprint, state, requested_at) \
         VALUES ($1,$2,$3,$4,$5,$6,'PENDING',$7) ON CONFLICT DO NOTHING",
    )
    .bind(request_id)
    .bind(server_id)
    .bind(kind)
    .bind(target.map(|(f, _)| json(f)))
    .bind(target.map(|(_, entry)| entry.id))
    .bind(target.map(|(_, entry)| entry.fingerprint.clone()))
    .bind(e.recorded_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn close_request(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    request_id: Uuid,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE ssh_requests SET state = $2, error = $3, finished_at = $4 WHERE request_id = $1")
        .bind(request_id)
        .bind(if error.is_some() { "FAILED" } else { "SUCCEEDED" })
        .bind(error)
        .bind(e.recorded_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn apply_server(conn: &mut PgConnection, e: &RecordedEvent, server_id: Uuid) -> Result<(), ApplyError> {
    use ServerEvent as E;
    let event = e.decode::<ServerEvent>()?;
    match &event {
        E::ServerRegistered { spec, host_key_fingerprint, .. } => {
            upsert_server(conn, server_id, spec, host_key_fingerprint.as_deref(), e.recorded_at).await?
        }
        E::ServerUpdated { spec } => upsert_server(conn, server_id, spec, None, e.recorded_at).await?,
        E::ServerRemoved {} => {
            sqlx::query("UPDATE servers SET removed_at = coalesce(removed_at, $2) WHERE server_id = $1")
                .bind(server_id)
                .bind(e.recorded_at)
                .execute(&mut *conn)
                .await?;
        }
        E::HostKeyPinned { fingerprint, .. } | E::HostKeyAccepted { fingerprint, .. } => {
            sqlx::query(
                "UPDATE servers SET host_key = $2, host_key_status = 'PINNED', presented_host_key = NULL \
                 WHERE server_id = $1",
            )
            .bind(server_id)
            .bind(fingerprint)
            .execute(&mut *conn)
            .await?;
        }
        E::HostKeyMismatch { presented, .. } => {
            sqlx::query(
                "UPDATE servers SET host_key_status = 'MISMATCH', presented_host_key = $2 WHERE server_id = $1",
            )
            .bind(server_id)
            .bind(presented)
            .execute(&mut *conn)
            .await?;
        }
        E::ConnectionTestRequested { request_id } => {
            open_request(conn, e, server_id, *request_id, "TEST_CONNECTION", None).await?
        }
        E::KeyCheckRequested { request_id } => open_request(conn, e, server_id, *request_id, "CHECK", None).await?,
        E::KeyInstallRequested { request_id, file, entry, .. } => {
            open_request(conn, e, server_id, *request_id, "INSTALL", Some((file, entry))).await?
        }
        E::KeyRemovalRequested { request_id, file, entry } => {
            open_request(conn, e, server_id, *request_id, "REMOVE", Some((file, entry))).await?
        }
        E::ConnectionTested { request_id, info } => {
            close_request(conn, e, *request_id, None).await?;
            sqlx::query(
                "UPDATE servers SET os = $2, kernel = $3, hostname = $4, rtt_ms = $5, last_test_at = $6, \
                 last_test_error = NULL WHERE server_id = $1",
            )
            .bind(server_id)
            .bind(&info.os)
            .bind(&info.kernel)
            .bind(&info.hostname)
            .bind(info.rtt_micros as f64 / 1000.0)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        E::ConnectionTestFailed { request_id, error } => {
            close_request(conn, e, *request_id, Some(error)).await?;
            sqlx::query("UPDATE servers SET last_test_at = $2, last_test_error = $3 WHERE server_id = $1")
                .bind(server_id)
                .bind(e.recorded_at)
                .bind(error)
                .execute(&mut *conn)
                .await?;
        }
        E::KeyInstalled { request_id, file, entry } => {
            close_request(conn, e, *request_id, None).await?;
            // A re-install of a key already there keeps its original stay.
            sqlx::query(
                "INSERT INTO ssh_installations (server_id, file, entry_kind, entry_id, fingerprint, installed_at) \
                 SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM ssh_installations \
                 WHERE server_id = $1 AND file = $2 AND entry_id = $4 AND removed_at IS NULL)",
            )
            .bind(server_id)
            .bind(json(file))
            .bind(json(&entry.kind).as_str().unwrap_or_default().to_owned())
            .bind(entry.id)
            .bind(&entry.fingerprint)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        E::KeyRemoved { request_id, file, entry } => {
            close_request(conn, e, *request_id, None).await?;
            sqlx::query(
                "UPDATE ssh_installations SET removed_at = $4 \
                 WHERE server_id = $1 AND file = $2 AND entry_id = $3 AND removed_at IS NULL",
            )
            .bind(server_id)
            .bind(json(file))
            .bind(entry.id)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        E::KeyInstallFailed { request_id, error, .. }
        | E::KeyRemovalFailed { request_id, error, .. }
        | E::KeyCheckFailed { request_id, error } => close_request(conn, e, *request_id, Some(error)).await?,
        E::KeysChecked { request_id, drift, certificate_drift } => {
            close_request(conn, e, *request_id, None).await?;
            sqlx::query(
                "UPDATE servers SET drift = $2, last_checked_at = $3, certificate_drift = $4 WHERE server_id = $1",
            )
            .bind(server_id)
            .bind(json(drift))
            .bind(e.recorded_at)
            .bind(json(certificate_drift))
            .execute(&mut *conn)
            .await?;
        }
        E::KeyDriftDetected { .. } | E::CertificateDriftDetected { .. } => {}
        E::CertificateDeploymentRequested { request_id, deployment } => {
            sqlx::query(
                "INSERT INTO ssh_requests (request_id, server_id, kind, entry_id, fingerprint, state, requested_at) \
                 VALUES ($1,$2,'DEPLOY',$3,$4,'PENDING',$5) ON CONFLICT DO NOTHING",
            )
            .bind(request_id)
            .bind(server_id)
            .bind(deployment.certificate_id)
            .bind(&deployment.fingerprint)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        E::CertificateDeployed { request_id, deployment, reload_exit_status } => {
            let error = reload_exit_status
                .filter(|s| *s != 0)
                .map(|s| format!("the certificate was written, but the reload command exited with status {s}"));
            close_request(conn, e, *request_id, error.as_deref()).await?;
            sqlx::query(
                "INSERT INTO certificate_deployments (server_id, cert_path, certificate_id, deployment, fingerprint, \
                 reload_exit_status, deployed_at) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (server_id, cert_path) \
                 DO UPDATE SET certificate_id = $3, deployment = $4, fingerprint = $5, reload_exit_status = $6, deployed_at = $7",
            )
            .bind(server_id)
            .bind(&deployment.cert_path)
            .bind(deployment.certificate_id)
            .bind(json(deployment))
            .bind(&deployment.fingerprint)
            .bind(reload_exit_status.map(|s| s as i32))
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        E::CertificateDeploymentFailed { request_id, error, .. } => {
            close_request(conn, e, *request_id, Some(error)).await?
        }
    }
    Ok(())
}

async fn apply_report(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
    let unity_domain::credentials::SshKeyReportEvent::UnusedSshKeysReported { unused_days, keys } =
        e.decode::<unity_domain::credentials::SshKeyReportEvent>()?;
    sqlx::query("INSERT INTO ssh_key_reports (reported_at, unused_days, keys) VALUES ($1, $2, $3)")
        .bind(e.recorded_at)
        .bind(unused_days as i32)
        .bind(json(&keys))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

// -------------------------------------------------------------------------------------------
// queries

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SshKeyRow {
    pub key_id: Uuid,
    pub name: String,
    pub algorithm: String,
    pub bits: i32,
    pub fingerprint: String,
    pub public_key: String,
    pub comment: String,
    pub tags: Vec<String>,
    pub origin: String,
    pub rotated_from: Option<Uuid>,
    pub replaced_by: Option<Uuid>,
    pub has_private_key: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Keys in creation order after `after`; deleted keys only if asked for.
pub async fn ssh_keys(
    pool: &PgPool,
    after: Option<Uuid>,
    limit: i64,
    include_deleted: bool,
) -> Result<Vec<SshKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM ssh_keys WHERE ($1::uuid IS NULL OR key_id > $1) AND ($3 OR deleted_at IS NULL) \
         ORDER BY key_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .bind(include_deleted)
    .fetch_all(pool)
    .await
}

pub async fn ssh_key(pool: &PgPool, key_id: Uuid) -> Result<Option<SshKeyRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_keys WHERE key_id = $1").bind(key_id).fetch_optional(pool).await
}

/// Keys not used by Unity's sessions (nor created) in the last `days` days.
pub async fn unused_ssh_keys(pool: &PgPool, days: i32) -> Result<Vec<SshKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM ssh_keys WHERE deleted_at IS NULL AND replaced_by IS NULL \
         AND coalesce(last_used_at, created_at) < now() - make_interval(days => $1) ORDER BY key_id",
    )
    .bind(days)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InstallationRow {
    pub server_id: Uuid,
    pub server_name: String,
    pub file: Value,
    pub entry_kind: String,
    pub entry_id: Uuid,
    pub fingerprint: String,
    pub installed_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

const INSTALLATION: &str =
    "SELECT i.server_id, s.name AS server_name, i.file, i.entry_kind, i.entry_id, i.fingerprint, \
     i.installed_at, i.removed_at FROM ssh_installations i JOIN servers s USING (server_id)";

/// Where a key (or CA) is installed now.
pub async fn installations_of(pool: &PgPool, entry_id: Uuid) -> Result<Vec<InstallationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{INSTALLATION} WHERE i.entry_id = $1 AND i.removed_at IS NULL AND s.removed_at IS NULL ORDER BY s.name, i.installed_at"
    )))
    .bind(entry_id)
    .fetch_all(pool)
    .await
}

/// What Unity has installed on a server now.
pub async fn installations_on(pool: &PgPool, server_id: Uuid) -> Result<Vec<InstallationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{INSTALLATION} WHERE i.server_id = $1 AND i.removed_at IS NULL ORDER BY i.installed_at"
    )))
    .bind(server_id)
    .fetch_all(pool)
    .await
}

/// Every stay of the key on any server that overlaps `[from, to]`.
pub async fn key_exposure(
    pool: &PgPool,
    entry_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<InstallationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{INSTALLATION} WHERE i.entry_id = $1 AND i.installed_at <= $3 AND (i.removed_at IS NULL OR i.removed_at >= $2) \
         ORDER BY i.installed_at, s.name"
    )))
    .bind(entry_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServerRow {
    pub server_id: Uuid,
    pub name: String,
    pub address: String,
    pub port: i32,
    pub username: String,
    pub auth_kind: String,
    pub auth_id: Uuid,
    pub authorized_keys_file: String,
    pub tags: Vec<String>,
    pub host_key: Option<String>,
    pub host_key_status: String,
    pub presented_host_key: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub hostname: Option<String>,
    pub rtt_ms: Option<f64>,
    pub last_test_at: Option<DateTime<Utc>>,
    pub last_test_error: Option<String>,
    pub drift: Value,
    pub certificate_drift: Value,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

pub async fn servers(pool: &PgPool, after: Option<Uuid>, limit: i64) -> Result<Vec<ServerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM servers WHERE removed_at IS NULL AND ($1::uuid IS NULL OR server_id > $1) \
         ORDER BY server_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn server(pool: &PgPool, server_id: Uuid) -> Result<Option<ServerRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM servers WHERE server_id = $1").bind(server_id).fetch_optional(pool).await
}

/// Servers (not removed) that log in with this key or credential.
pub async fn servers_authenticating_with(pool: &PgPool, auth_id: Uuid) -> Result<Vec<ServerRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM servers WHERE auth_id = $1 AND removed_at IS NULL ORDER BY name")
        .bind(auth_id)
        .fetch_all(pool)
        .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RequestRow {
    pub request_id: Uuid,
    pub server_id: Uuid,
    pub kind: String,
    pub state: String,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn requests(pool: &PgPool, request_ids: &[Uuid]) -> Result<Vec<RequestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_id, server_id, kind, state, error, requested_at, finished_at FROM ssh_requests \
         WHERE request_id = ANY($1)",
    )
    .bind(request_ids)
    .fetch_all(pool)
    .await
}

/// Follow-up requests opened by the given ones' outcomes (a rotation's removal of the old key).
pub async fn removal_of(
    pool: &PgPool,
    server_id: Uuid,
    entry_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_id, server_id, kind, state, error, requested_at, finished_at FROM ssh_requests \
         WHERE server_id = $1 AND entry_id = $2 AND kind = 'REMOVE' AND requested_at >= $3 \
         ORDER BY requested_at DESC LIMIT 1",
    )
    .bind(server_id)
    .bind(entry_id)
    .bind(since)
    .fetch_optional(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SshCaRow {
    pub ca_id: Uuid,
    pub name: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
    pub certificates: i64,
}

pub async fn ssh_cas(pool: &PgPool) -> Result<Vec<SshCaRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_cas ORDER BY ca_id").fetch_all(pool).await
}

pub async fn ssh_ca(pool: &PgPool, ca_id: Uuid) -> Result<Option<SshCaRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_cas WHERE ca_id = $1").bind(ca_id).fetch_optional(pool).await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CertificateRow {
    pub ca_id: Uuid,
    pub serial: i64,
    pub cert_type: String,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    pub extensions: Vec<String>,
    pub critical_options: Value,
    pub subject_fingerprint: String,
    pub signed_at: DateTime<Utc>,
    pub signed_by: String,
}

/// A CA's certificates, newest first, before serial `before`.
pub async fn certificates(
    pool: &PgPool,
    ca_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<CertificateRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM ssh_certificates WHERE ca_id = $1 AND ($2::bigint IS NULL OR serial < $2) \
         ORDER BY serial DESC LIMIT $3",
    )
    .bind(ca_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServerCredentialRow {
    pub credential_id: Uuid,
    pub name: String,
    pub kind: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

pub async fn server_credentials(pool: &PgPool) -> Result<Vec<ServerCredentialRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM server_credentials WHERE deleted_at IS NULL ORDER BY name, credential_id")
        .fetch_all(pool)
        .await
}

pub async fn server_credential(pool: &PgPool, id: Uuid) -> Result<Option<ServerCredentialRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM server_credentials WHERE credential_id = $1").bind(id).fetch_optional(pool).await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyReportRow {
    pub reported_at: DateTime<Utc>,
    pub unused_days: i32,
    pub keys: Value,
}

pub async fn latest_key_report(pool: &PgPool) -> Result<Option<KeyReportRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_key_reports ORDER BY reported_at DESC LIMIT 1").fetch_optional(pool).await
}

/// Counts for /metrics.
#[derive(Clone, Debug, Default)]
pub struct CredentialCounts {
    pub keys_by_algorithm: Vec<(String, i64)>,
    pub servers_by_host_key_status: Vec<(String, i64)>,
    /// (INSTALL | REMOVE, SUCCEEDED | FAILED, count)
    pub distributions: Vec<(String, String, i64)>,
    pub certificates_signed: i64,
}

pub async fn counts(pool: &PgPool) -> Result<CredentialCounts, sqlx::Error> {
    Ok(CredentialCounts {
        keys_by_algorithm: sqlx::query_as(
            "SELECT algorithm, count(*) FROM ssh_keys WHERE deleted_at IS NULL GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(pool)
        .await?,
        servers_by_host_key_status: sqlx::query_as(
            "SELECT host_key_status, count(*) FROM servers WHERE removed_at IS NULL GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(pool)
        .await?,
        distributions: sqlx::query_as(
            "SELECT kind, state, count(*) FROM ssh_requests WHERE kind IN ('INSTALL', 'REMOVE') \
             AND state <> 'PENDING' GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await?,
        certificates_signed: sqlx::query_scalar("SELECT count(*) FROM ssh_certificates").fetch_one(pool).await?,
    })
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeploymentRow {
    pub server_id: Uuid,
    pub server_name: String,
    pub cert_path: String,
    pub certificate_id: Uuid,
    pub deployment: Value,
    pub fingerprint: String,
    pub reload_exit_status: Option<i32>,
    pub deployed_at: DateTime<Utc>,
}

/// Where a certificate is deployed now.
pub async fn deployments_of(pool: &PgPool, certificate_id: Uuid) -> Result<Vec<DeploymentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.server_id, s.name AS server_name, d.cert_path, d.certificate_id, d.deployment, d.fingerprint, \
         d.reload_exit_status, d.deployed_at FROM certificate_deployments d JOIN servers s USING (server_id) \
         WHERE d.certificate_id = $1 AND s.removed_at IS NULL ORDER BY s.name, d.cert_path",
    )
    .bind(certificate_id)
    .fetch_all(pool)
    .await
}

/// A deployment of a certificate that has since been renewed: where it is, and the newest
/// certificate in its line of renewals (current, not revoked).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StaleDeploymentRow {
    pub server_id: Uuid,
    pub cert_path: String,
    pub certificate_id: Uuid,
    pub deployment: serde_json::Value,
    pub newest_id: Uuid,
}

/// Deployments to bring up to date: the deployed certificate was renewed, and no deployment of
/// the newest renewal to that server is pending. Reads the certificates read model too.
pub async fn stale_deployments(pool: &PgPool) -> Result<Vec<StaleDeploymentRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH RECURSIVE line(start_id, current_id) AS ( \
             SELECT certificate_id, renewed_by FROM certificates WHERE renewed_by IS NOT NULL \
             UNION ALL \
             SELECT line.start_id, c.renewed_by FROM line JOIN certificates c ON c.certificate_id = line.current_id \
             WHERE c.renewed_by IS NOT NULL) \
         SELECT d.server_id, d.cert_path, d.certificate_id, d.deployment, line.current_id AS newest_id \
         FROM certificate_deployments d \
         JOIN servers s ON s.server_id = d.server_id AND s.removed_at IS NULL \
         JOIN line ON line.start_id = d.certificate_id \
         JOIN certificates newest ON newest.certificate_id = line.current_id \
              AND newest.renewed_by IS NULL AND newest.revoked_at IS NULL \
         WHERE NOT EXISTS (SELECT 1 FROM ssh_requests r WHERE r.server_id = d.server_id AND r.kind = 'DEPLOY' \
              AND r.entry_id = line.current_id AND r.state = 'PENDING') \
         ORDER BY d.server_id, d.cert_path",
    )
    .fetch_all(pool)
    .await
}
