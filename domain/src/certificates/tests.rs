use chrono::TimeZone;

use super::*;
use crate::certificates::X509KeyAlgorithm;
use crate::decider::spec::given;
use crate::{decider::Decider, SecretRef};
use chrono::Utc;
use uuid::Uuid;

fn facts(is_ca: bool) -> CertificateFacts {
    CertificateFacts {
        subject: "CN=lab".into(),
        common_name: Some("lab".into()),
        issuer: "CN=lab".into(),
        serial: "01".into(),
        not_before: Utc.timestamp_opt(0, 0).unwrap(),
        not_after: Utc.timestamp_opt(1000, 0).unwrap(),
        dns_names: vec![],
        ip_addresses: vec![],
        fingerprint: "ab".into(),
        is_ca,
    }
}

fn record() -> CertificateCommand {
    CertificateCommand::Record {
        certificate_id: Uuid::from_u128(1),
        name: "web".into(),
        source: CertificateSource::Imported,
        usage: None,
        key_algorithm: None,
        facts: facts(false),
        certificate_pem: "pem".into(),
        chain_pem: String::new(),
        private_key: None,
        renewal_of: None,
    }
}

#[test]
fn names_and_labels_are_checked() {
    for good in ["lab.example", "*.lab.example", "nas", "a-b.c1"] {
        assert!(check_dns_name(good).is_ok(), "{good}");
    }
    for bad in ["", "*.", "-a.b", "a..b", "a b", "a_b.c", "*.*.a"] {
        assert!(check_dns_name(bad).is_err(), "{bad}");
    }
    assert!(check_validity_days(0).is_err() && check_validity_days(36_501).is_err() && check_validity_days(90).is_ok());
}

#[test]
fn certificates_are_recorded_once_and_revoked_once() {
    let issued = Certificate::decide(&record(), &CertificateState::Absent).unwrap();
    given::<Certificate>(&issued).when(record()).then_error(X509Error::Exists);
    let at = Utc.timestamp_opt(500, 0).unwrap();
    let revoked = CertificateEvent::CertificateRevoked { reason: RevocationReason::KeyCompromise, revoked_at: at };
    given::<Certificate>(&issued)
        .when(CertificateCommand::Revoke { reason: RevocationReason::KeyCompromise, at })
        .then(&[revoked.clone()]);
    let mut history = issued.clone();
    history.push(revoked);
    given::<Certificate>(&history)
        .when(CertificateCommand::Revoke { reason: RevocationReason::Superseded, at })
        .then(&[]);
    given::<Certificate>(&[])
        .when(CertificateCommand::Revoke { reason: RevocationReason::Superseded, at })
        .then_error(X509Error::NotFound);
}

fn lived(days: i64) -> Vec<CertificateEvent> {
    let CertificateCommand::Record { certificate_id, name, source, facts, certificate_pem, chain_pem, .. } = record()
    else {
        unreachable!()
    };
    let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
    let facts = CertificateFacts { not_before: t0, not_after: t0 + chrono::Duration::days(days), ..facts };
    vec![CertificateEvent::CertificateIssued {
        certificate_id,
        name,
        source,
        usage: None,
        key_algorithm: None,
        facts,
        certificate_pem,
        chain_pem,
        private_key: None,
        renewal_of: None,
    }]
}

#[test]
fn renewal_is_due_at_two_thirds_or_as_configured_and_backs_off_after_failures() {
    let history = lived(90);
    let CertificateState::Present(data) = Certificate::fold(&history) else { panic!() };
    let t0 = data.not_before;
    assert_eq!(data.renew_at(), t0 + chrono::Duration::days(60));
    assert!(!data.renewal_due(t0 + chrono::Duration::days(59)) && data.renewal_due(t0 + chrono::Duration::days(60)));
    given::<Certificate>(&history)
        .when(CertificateCommand::ConfigureRenewal { renew_before_days: Some(90) })
        .then_error(X509Error::Invalid(
            "renewBeforeDays must be between 1 and 89 (the certificate lives 90 days)".into(),
        ));
    let mut configured = history.clone();
    configured.extend(
        Certificate::decide(
            &CertificateCommand::ConfigureRenewal { renew_before_days: Some(10) },
            &Certificate::fold(&history),
        )
        .unwrap(),
    );
    let CertificateState::Present(data) = Certificate::fold(&configured) else { panic!() };
    assert_eq!(data.renew_at(), t0 + chrono::Duration::days(80));
    let now = t0 + chrono::Duration::days(81);
    let failed = Certificate::decide(
        &CertificateCommand::RecordRenewalFailure { error: "CA expired".into(), now },
        &Certificate::fold(&configured),
    )
    .unwrap();
    assert!(matches!(failed[1], CertificateEvent::CertificateExpiring { cause: ExpiryCause::RenewalFailed, .. }));
    configured.extend(failed);
    let CertificateState::Present(data) = Certificate::fold(&configured) else { panic!() };
    assert!(!data.renewal_due(now) && data.renewal_due(now + chrono::Duration::hours(1)));
    assert_eq!(renewal_backoff(3), chrono::Duration::hours(4));
    assert_eq!(renewal_backoff(30), chrono::Duration::hours(24));
}

#[test]
fn an_ordered_renewal_runs_once_and_is_closed_by_its_outcome() {
    let history = lived(90);
    let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
    let due = t0 + chrono::Duration::days(61);
    let order_id = Uuid::from_u128(7);
    let mut history = history;
    history.extend(
        Certificate::decide(&CertificateCommand::RequestRenewal { order_id }, &Certificate::fold(&history)).unwrap(),
    );
    let CertificateState::Present(data) = Certificate::fold(&history) else { panic!() };
    assert!(!data.renewal_due(due), "not twice while the order runs");
    given::<Certificate>(&history).when(CertificateCommand::RequestRenewal { order_id }).then(&[]);
    given::<Certificate>(&history)
        .when(CertificateCommand::RequestRenewal { order_id: Uuid::from_u128(8) })
        .then_error(X509Error::Invalid("a renewal of this certificate is under way".into()));
    let failed = Certificate::decide(
        &CertificateCommand::RecordRenewalFailure { error: "refused".into(), now: due },
        &Certificate::fold(&history),
    )
    .unwrap();
    history.extend(failed);
    let CertificateState::Present(data) = Certificate::fold(&history) else { panic!() };
    assert_eq!(data.renewal_order, None);
    assert!(!data.renewal_due(due) && data.renewal_due(due + chrono::Duration::hours(1)), "backed off, then due");
}

#[test]
fn expiry_warnings_come_once_per_threshold() {
    let mut history = lived(90);
    let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
    let thresholds = vec![30, 14, 7, 1];
    let check = |history: &[CertificateEvent], day: i64| {
        Certificate::decide(
            &CertificateCommand::CheckExpiry { now: t0 + chrono::Duration::days(day), thresholds: thresholds.clone() },
            &Certificate::fold(history),
        )
        .unwrap()
    };
    assert!(check(&history, 59).is_empty(), "31 days left");
    let warned = check(&history, 61);
    assert!(matches!(warned[..], [CertificateEvent::CertificateExpiring { threshold_days: Some(30), .. }]));
    history.extend(warned);
    assert!(check(&history, 62).is_empty(), "not every day");
    // Checks missed for a while: only the tightest threshold crossed is reported.
    let warned = check(&history, 85);
    assert!(matches!(warned[..], [CertificateEvent::CertificateExpiring { threshold_days: Some(7), .. }]));
    history.extend(warned);
    assert!(check(&history, 86).is_empty());
    assert_eq!(check(&history, 89).len(), 1);
    assert!(check(&history, 91).is_empty(), "expired: nothing more to warn about");
}

#[test]
fn a_ca_must_be_a_ca() {
    let create = CreateCa {
        ca_id: Uuid::from_u128(1),
        name: "lab root".into(),
        key_algorithm: X509KeyAlgorithm::EcdsaP256,
        path_length: Some(1),
        parent_id: None,
        facts: facts(false),
        certificate_pem: "pem".into(),
        chain_pem: String::new(),
        private_key: SecretRef { secret_id: Uuid::from_u128(2), ciphertext: "c".into() },
    };
    assert!(matches!(X509Ca::decide(&create, &X509CaState::Absent), Err(X509Error::Invalid(_))));
    let create = CreateCa { facts: facts(true), ..create };
    let events = X509Ca::decide(&create, &X509CaState::Absent).unwrap();
    given::<X509Ca>(&events).when(create).then_error(X509Error::CaExists);
}
