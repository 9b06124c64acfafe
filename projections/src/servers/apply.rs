//! How server events change the servers, requests, installations and deployments tables.

use crate::credentials::json;
use crate::engine::ApplyError;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use unity_commands::store::RecordedEvent;
use unity_domain::servers::{ManagedEntry, ManagedFile, ServerAuth, ServerEvent, ServerSpec};
use uuid::Uuid;

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

pub(crate) async fn apply_server(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    server_id: Uuid,
) -> Result<(), ApplyError> {
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
