//! How SSH key, SSH CA, server credential and report events change the credentials tables.

use super::json;
use crate::engine::ApplyError;
use serde_json::Value;
use sqlx::PgConnection;
use unity_commands::store::RecordedEvent;
use unity_domain::credentials::{KeyOrigin, ServerCredentialEvent, SshCaEvent, SshKeyEvent};
use uuid::Uuid;

pub(super) async fn apply_key(conn: &mut PgConnection, e: &RecordedEvent, key_id: Uuid) -> Result<(), ApplyError> {
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

pub(super) async fn apply_ca(conn: &mut PgConnection, e: &RecordedEvent, ca_id: Uuid) -> Result<(), ApplyError> {
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

pub(super) async fn apply_credential(conn: &mut PgConnection, e: &RecordedEvent, id: Uuid) -> Result<(), ApplyError> {
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

pub(super) async fn apply_report(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
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
