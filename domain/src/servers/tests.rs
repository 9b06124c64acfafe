use super::*;
use crate::decider::spec::given;
use crate::decider::Decider;
use uuid::Uuid;

const FP: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
const OTHER: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

fn spec() -> ServerSpec {
    ServerSpec {
        name: "nas".into(),
        address: "127.0.0.1".into(),
        port: 2222,
        username: "root".into(),
        authentication: ServerAuth::SshKey { key_id: Uuid::from_u128(7) },
        authorized_keys_file: DEFAULT_AUTHORIZED_KEYS_FILE.into(),
        tags: vec![],
    }
}

fn registered(host_key: Option<&str>) -> ServerEvent {
    ServerEvent::ServerRegistered {
        server_id: Uuid::from_u128(1),
        spec: spec(),
        host_key_fingerprint: host_key.map(str::to_owned),
    }
}

fn entry(n: u128) -> ManagedEntry {
    ManagedEntry {
        kind: EntryKind::SshKey,
        id: Uuid::from_u128(n),
        fingerprint: format!("SHA256:{n}"),
        public_key: format!("ssh-ed25519 AAAA{n} k{n}"),
    }
}

fn file() -> ManagedFile {
    ManagedFile::AuthorizedKeys { user: "root".into() }
}

#[test]
fn specs_are_checked() {
    let bad = [
        ServerSpec { address: "host; rm -rf /".into(), ..spec() },
        ServerSpec { port: 0, ..spec() },
        ServerSpec { username: "-oProxyCommand".into(), ..spec() },
        ServerSpec { authorized_keys_file: "relative/keys".into(), ..spec() },
        ServerSpec { authorized_keys_file: "%h/../../etc/shadow".into(), ..spec() },
    ];
    for spec in bad {
        let register = ServerCommand::Register { server_id: Uuid::from_u128(1), spec, host_key_fingerprint: None };
        assert!(matches!(Server::decide(&register, &ServerState::Absent), Err(ServerError::Invalid(_))));
    }
    let register = ServerCommand::Register {
        server_id: Uuid::from_u128(1),
        spec: spec(),
        host_key_fingerprint: Some("md5:aa:bb".into()),
    };
    assert!(Server::decide(&register, &ServerState::Absent).is_err());
}

#[test]
fn the_first_host_key_is_pinned_and_a_different_one_is_recorded_once_until_accepted() {
    given::<Server>(&[registered(None)])
        .when(ServerCommand::ObserveHostKey { presented: FP.into() })
        .then(&[ServerEvent::HostKeyPinned { fingerprint: FP.into(), trust_on_first_use: true }]);
    given::<Server>(&[registered(Some(FP))]).when(ServerCommand::ObserveHostKey { presented: FP.into() }).then(&[]);
    let mismatch = ServerEvent::HostKeyMismatch { expected: FP.into(), presented: OTHER.into() };
    given::<Server>(&[registered(Some(FP))])
        .when(ServerCommand::ObserveHostKey { presented: OTHER.into() })
        .then(&[mismatch.clone()]);
    given::<Server>(&[registered(Some(FP)), mismatch.clone()])
        .when(ServerCommand::ObserveHostKey { presented: OTHER.into() })
        .then(&[]);
    let state = Server::fold(&[registered(Some(FP)), mismatch.clone()]);
    let ServerState::Active(data) = &state else { panic!() };
    assert_eq!(data.host_key_status, HostKeyStatus::Mismatch);
    assert_eq!(data.host_key.as_deref(), Some(FP), "the pinned key does not change by itself");
    let accepted = ServerEvent::HostKeyAccepted { fingerprint: OTHER.into(), previous: Some(FP.into()) };
    given::<Server>(&[registered(Some(FP)), mismatch.clone()])
        .when(ServerCommand::AcceptHostKey { fingerprint: OTHER.into() })
        .then(&[accepted.clone()]);
    given::<Server>(&[registered(Some(FP)), mismatch, accepted])
        .when(ServerCommand::ObserveHostKey { presented: OTHER.into() })
        .then(&[]);
}

#[test]
fn requests_pair_with_their_outcomes_and_rotation_opens_the_old_keys_removal() {
    let r = |n: u128| Uuid::from_u128(100 + n);
    let install =
        |n, e, replaces| ServerEvent::KeyInstallRequested { request_id: r(n), file: file(), entry: entry(e), replaces };
    let installed = |n, e| ServerEvent::KeyInstalled { request_id: r(n), file: file(), entry: entry(e) };
    let history =
        vec![registered(Some(FP)), install(1, 10, None), installed(1, 10), install(2, 11, Some(Uuid::from_u128(10)))];
    given::<Server>(&history)
        .when(ServerCommand::Complete { request_id: r(2), outcome: Outcome::Done, follow_up_id: r(3) })
        .then(&[
            installed(2, 11),
            ServerEvent::KeyRemovalRequested { request_id: r(3), file: file(), entry: entry(10) },
        ]);
    given::<Server>(&history)
        .when(ServerCommand::Complete {
            request_id: r(2),
            outcome: Outcome::Failed("refused".into()),
            follow_up_id: r(3),
        })
        .then(&[ServerEvent::KeyInstallFailed {
            request_id: r(2),
            file: file(),
            entry: entry(11),
            error: "refused".into(),
        }]);
    given::<Server>(&history)
        .when(ServerCommand::Complete { request_id: r(1), outcome: Outcome::Done, follow_up_id: r(3) })
        .then_error(ServerError::RequestNotPending(r(1)));
    let state = Server::fold(&history);
    let ServerState::Active(data) = &state else { panic!() };
    assert_eq!(data.installed_in(&file()).count(), 1);
    assert_eq!(data.pending.len(), 1);
}

#[test]
fn drift_is_recorded_once_per_distinct_difference() {
    let e10 = entry(10);
    let found = ["ssh-ed25519 AAAAhand by-hand"];
    let d = drift(&file(), &[&e10], &found).unwrap();
    assert_eq!(d.unexpected, vec!["ssh-ed25519 AAAAhand by-hand".to_string()]);
    assert_eq!(d.missing, vec![e10.clone()]);
    assert_eq!(drift(&file(), &[&e10], &["ssh-ed25519 AAAA10 renamed"]), None, "comments do not matter");
    let check = |n| ServerEvent::KeyCheckRequested { request_id: Uuid::from_u128(n) };
    let checked = |n, d: Vec<FileDrift>| ServerEvent::KeysChecked {
        request_id: Uuid::from_u128(n),
        drift: d,
        certificate_drift: vec![],
    };
    given::<Server>(&[registered(None), check(1)])
        .when(ServerCommand::Complete {
            request_id: Uuid::from_u128(1),
            outcome: Outcome::Checked(vec![d.clone()], vec![]),
            follow_up_id: Uuid::nil(),
        })
        .then(&[checked(1, vec![d.clone()]), ServerEvent::KeyDriftDetected { drift: d.clone() }]);
    given::<Server>(&[registered(None), check(1), checked(1, vec![d.clone()]), check(2)])
        .when(ServerCommand::Complete {
            request_id: Uuid::from_u128(2),
            outcome: Outcome::Checked(vec![d.clone()], vec![]),
            follow_up_id: Uuid::nil(),
        })
        .then(&[checked(2, vec![d])]);
}
