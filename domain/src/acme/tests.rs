use super::*;
use crate::certificates::X509KeyAlgorithm;
use crate::decider::spec::given;
use crate::decider::Decider;
use uuid::Uuid;

fn spec() -> AcmeOrderSpec {
    AcmeOrderSpec {
        account_id: Uuid::from_u128(1),
        name: "www".into(),
        domains: vec!["www.lab.example".into()],
        challenge: ChallengeKind::Http01,
        key_algorithm: X509KeyAlgorithm::EcdsaP256,
        dns_provider_id: None,
        renewal_of: None,
    }
}

#[test]
fn orders_are_checked_and_closed_once() {
    let order_id = Uuid::from_u128(9);
    let request = |spec| AcmeOrderCommand::Request { order_id, spec };
    let wildcard = AcmeOrderSpec { domains: vec!["*.lab.example".into()], ..spec() };
    assert!(matches!(AcmeOrder::decide(&request(wildcard), &AcmeOrderState::Absent), Err(AcmeError::Invalid(_))));
    let twice = AcmeOrderSpec { domains: vec!["a.example".into(), "A.example".into()], ..spec() };
    assert!(matches!(AcmeOrder::decide(&request(twice), &AcmeOrderState::Absent), Err(AcmeError::Invalid(_))));
    let dns = AcmeOrderSpec { challenge: ChallengeKind::Dns01, ..spec() };
    assert_eq!(
        AcmeOrder::decide(&request(dns), &AcmeOrderState::Absent),
        Err(AcmeError::Invalid("DNS01 needs a dnsProviderId".into()))
    );

    let requested = AcmeOrder::decide(&request(spec()), &AcmeOrderState::Absent).unwrap();
    let completed = AcmeOrderEvent::AcmeOrderCompleted { certificate_id: Uuid::from_u128(3) };
    given::<AcmeOrder>(&requested)
        .when(AcmeOrderCommand::Progress(completed.clone()))
        .then(std::slice::from_ref(&completed));
    let mut history = requested.clone();
    history.push(completed);
    let failed = AcmeOrderEvent::AcmeOrderFailed { error: "x".into(), problem_type: None, authorizations: vec![] };
    given::<AcmeOrder>(&history).when(AcmeOrderCommand::Progress(failed)).then_error(AcmeError::OrderFinished);
    given::<AcmeOrder>(&history).when(request(spec())).then_error(AcmeError::Exists);
}

#[test]
fn accounts_close_their_registration_once() {
    let spec = AcmeAccountSpec {
        name: "le".into(),
        directory_url: "https://acme.example/dir".into(),
        email: Some("ops@lab.example".into()),
        eab_kid: None,
        eab_hmac_key: None,
        ca_bundle_pem: None,
        terms_agreed: true,
    };
    let request = |spec| AcmeAccountCommand::Request { account_id: Uuid::from_u128(1), spec };
    let bad_url = AcmeAccountSpec { directory_url: "ftp://x".into(), ..spec.clone() };
    assert!(AcmeAccount::decide(&request(bad_url), &AcmeAccountState::Absent).is_err());
    let bad_mail = AcmeAccountSpec { email: Some("nobody".into()), ..spec.clone() };
    assert!(AcmeAccount::decide(&request(bad_mail), &AcmeAccountState::Absent).is_err());
    let half_eab = AcmeAccountSpec { eab_kid: Some("kid".into()), ..spec.clone() };
    assert!(AcmeAccount::decide(&request(half_eab), &AcmeAccountState::Absent).is_err());

    let requested = AcmeAccount::decide(&request(spec), &AcmeAccountState::Absent).unwrap();
    let failure = AcmeAccountCommand::RecordFailure { error: "no".into(), problem_type: None };
    let failed = AcmeAccount::decide(&failure, &AcmeAccount::fold(&requested)).unwrap();
    let mut history = requested;
    history.extend(failed);
    assert!(matches!(AcmeAccount::fold(&history), AcmeAccountState::Failed { .. }));
    given::<AcmeAccount>(&history).when(failure).then(&[]);
}

#[test]
fn dns_providers_need_whole_tsig_keys() {
    let create = |config| DnsProviderCommand::Create { provider_id: Uuid::from_u128(1), name: "knot".into(), config };
    let half = DnsProviderConfig::Rfc2136 {
        server: "127.0.0.1:53".into(),
        zone: "lab.example".into(),
        tsig_key_name: Some("unity".into()),
        tsig_algorithm: None,
        tsig_secret: None,
    };
    assert!(DnsProvider::decide(&create(half), &DnsProviderState::Absent).is_err());
    let no_port = DnsProviderConfig::Rfc2136 {
        server: "ns1.lab.example".into(),
        zone: "lab.example".into(),
        tsig_key_name: None,
        tsig_algorithm: None,
        tsig_secret: None,
    };
    assert!(DnsProvider::decide(&create(no_port), &DnsProviderState::Absent).is_err());
    let hook = DnsProviderConfig::Webhook { url: "https://dns.lab.example/hook".into(), bearer_token: None };
    let created = DnsProvider::decide(&create(hook), &DnsProviderState::Absent).unwrap();
    given::<DnsProvider>(&created).when(DnsProviderCommand::Delete).then(&[DnsProviderEvent::DnsProviderDeleted {}]);
}
