use chrono::TimeZone;

use super::*;
use crate::decider::spec::given;
use crate::{decider::Decider, SecretRef};
use chrono::Utc;
use uuid::Uuid;

fn secret(n: u128) -> SecretRef {
    SecretRef { secret_id: Uuid::from_u128(n), ciphertext: format!("ct{n}") }
}

fn info(algorithm: KeyAlgorithm, bits: u32) -> PublicKeyInfo {
    PublicKeyInfo { algorithm, bits, fingerprint: "SHA256:abc".into(), public_key: "ssh-ed25519 AAAA".into() }
}

fn create(private: bool) -> SshKeyCommand {
    SshKeyCommand::Create {
        key_id: Uuid::from_u128(1),
        name: " deploy ".into(),
        origin: KeyOrigin::Generated,
        key: info(KeyAlgorithm::Ed25519, 256),
        comment: "c".into(),
        tags: vec!["env:lab".into()],
        private_key: private.then(|| secret(2)),
    }
}

fn created(private: bool) -> SshKeyEvent {
    SshKeyEvent::SshKeyCreated {
        key_id: Uuid::from_u128(1),
        name: "deploy".into(),
        origin: KeyOrigin::Generated,
        key: info(KeyAlgorithm::Ed25519, 256),
        comment: "c".into(),
        tags: vec!["env:lab".into()],
        private_key: private.then(|| secret(2)),
    }
}

#[test]
fn keys_are_created_once_with_valid_names_tags_and_sizes() {
    given::<SshKey>(&[]).when(create(true)).then(&[created(true)]);
    given::<SshKey>(&[created(true)]).when(create(true)).then_error(CredentialError::KeyExists);
    let SshKeyCommand::Create { key_id, origin, comment, private_key, .. } = create(true) else { unreachable!() };
    let with = |name: &str, tags: Vec<String>, key: PublicKeyInfo| SshKeyCommand::Create {
        key_id,
        name: name.into(),
        origin: origin.clone(),
        key,
        comment: comment.clone(),
        tags,
        private_key: private_key.clone(),
    };
    given::<SshKey>(&[])
        .when(with("k", vec![], info(KeyAlgorithm::Rsa, 1024)))
        .then_error(CredentialError::RsaTooSmall(1024));
    assert!(SshKey::decide(&with("  ", vec![], info(KeyAlgorithm::Ed25519, 256)), &SshKeyState::Absent).is_err());
    assert!(
        SshKey::decide(&with("k", vec!["a b".into()], info(KeyAlgorithm::Ed25519, 256)), &SshKeyState::Absent).is_err()
    );
    let sneaky = SshKeyCommand::Create {
        key_id,
        name: "k".into(),
        origin: origin.clone(),
        key: info(KeyAlgorithm::Ed25519, 256),
        comment: "x\n# END UNITY MANAGED BLOCK".into(),
        tags: vec![],
        private_key: None,
    };
    assert!(SshKey::decide(&sneaky, &SshKeyState::Absent).is_err(), "no newlines in comments");
}

#[test]
fn uses_only_move_forward_and_rotation_needs_the_private_half() {
    let t = |s| Utc.timestamp_opt(s, 0).unwrap();
    let used = SshKeyEvent::SshKeyUsed { last_used_at: t(100), sessions: 1 };
    given::<SshKey>(&[created(true)]).when(SshKeyCommand::RecordUse { at: t(100), sessions: 1 }).then(&[used.clone()]);
    given::<SshKey>(&[created(true), used]).when(SshKeyCommand::RecordUse { at: t(50), sessions: 3 }).then(&[]);
    given::<SshKey>(&[created(false)])
        .when(SshKeyCommand::MarkRotated { replaced_by: Uuid::from_u128(9) })
        .then_error(CredentialError::NoPrivateKey("rotate"));
    let rotated = SshKeyEvent::SshKeyRotated { replaced_by: Uuid::from_u128(9) };
    given::<SshKey>(&[created(true)])
        .when(SshKeyCommand::MarkRotated { replaced_by: Uuid::from_u128(9) })
        .then(&[rotated.clone()]);
    given::<SshKey>(&[created(true), rotated])
        .when(SshKeyCommand::MarkRotated { replaced_by: Uuid::from_u128(8) })
        .then_error(CredentialError::AlreadyRotated(Uuid::from_u128(9)));
}

#[test]
fn deletion_is_final_and_says_whether_a_private_half_was_shredded() {
    let deleted = SshKeyEvent::SshKeyDeleted { private_key_shredded: false };
    given::<SshKey>(&[created(false)]).when(SshKeyCommand::Delete).then(&[deleted.clone()]);
    given::<SshKey>(&[created(false), deleted.clone()]).when(SshKeyCommand::Delete).then(&[]);
    given::<SshKey>(&[created(false), deleted])
        .when(SshKeyCommand::RecordUse { at: Utc::now(), sessions: 1 })
        .then_error(CredentialError::KeyDeleted);
}

#[test]
fn certificate_serials_count_up_and_requests_are_checked() {
    let t = |s| Utc.timestamp_opt(s, 0).unwrap();
    let created = SshCaEvent::SshCaCreated {
        ca_id: Uuid::from_u128(1),
        name: "users".into(),
        key: info(KeyAlgorithm::Ed25519, 256),
        private_key: secret(2),
    };
    let request = CertificateRequest {
        cert_type: CertType::User,
        key_id: "ada@laptop".into(),
        principals: vec!["ada".into()],
        valid_after: t(0),
        valid_before: t(3600),
        extensions: vec!["permit-pty".into()],
        critical_options: vec![],
    };
    let sign = |serial| SshCaCommand::RecordSignature {
        serial,
        request: request.clone(),
        subject_fingerprint: "SHA256:x".into(),
    };
    let signed = SshCaEvent::SshCertificateSigned {
        serial: 1,
        request: request.clone(),
        subject_fingerprint: "SHA256:x".into(),
    };
    given::<SshCa>(&[created.clone()]).when(sign(1)).then(&[signed.clone()]);
    assert_eq!(SshCa::fold(&[created.clone(), signed.clone()]).next_serial(), 2);
    assert!(SshCa::decide(&sign(1), &SshCa::fold(&[created.clone(), signed])).is_err());
    let backwards = CertificateRequest { valid_before: t(0), ..request };
    assert!(SshCa::decide(
        &SshCaCommand::RecordSignature { serial: 1, request: backwards, subject_fingerprint: "f".into() },
        &SshCa::fold(&[created])
    )
    .is_err());
}

#[test]
fn credential_updates_carry_only_what_changed() {
    let created = ServerCredentialEvent::ServerCredentialCreated {
        credential_id: Uuid::from_u128(1),
        name: "root pw".into(),
        kind: CredentialKind::Password,
        username: "root".into(),
        secret: secret(3),
    };
    given::<ServerCredential>(&[created.clone()])
        .when(ServerCredentialCommand::Update { name: None, username: None, secret: Some(secret(4)) })
        .then(&[ServerCredentialEvent::ServerCredentialUpdated {
            name: None,
            username: None,
            secret: Some(secret(4)),
        }]);
    given::<ServerCredential>(&[created])
        .when(ServerCredentialCommand::Update { name: None, username: Some("bad user".into()), secret: None })
        .then_error(CredentialError::Invalid("a username is 1 to 64 characters without spaces".into()));
}
