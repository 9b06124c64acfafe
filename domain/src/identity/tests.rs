use chrono::Duration;

use super::*;
use crate::decider::spec::given;
use crate::{decider::Decider, event::DomainEvent, SecretRef};
use chrono::DateTime;
use uuid::Uuid;

fn secret(n: u128) -> SecretRef {
    SecretRef { secret_id: Uuid::from_u128(n), ciphertext: format!("ct{n}") }
}

fn created(role: Role) -> UserEvent {
    UserEvent::UserCreated {
        user_id: Uuid::from_u128(1),
        username: Username::parse("ada").unwrap(),
        role,
        password_hash: secret(10),
    }
}

#[test]
fn a_new_user_is_created_once() {
    let create = UserCommand::Create {
        user_id: Uuid::from_u128(1),
        username: Username::parse("Ada").unwrap(),
        role: Role::Operator,
        password_hash: secret(10),
    };
    given::<User>(&[]).when(create.clone()).then(&[created(Role::Operator)]);
    given::<User>(&[created(Role::Operator)]).when(create).then_error(IdentityError::UserAlreadyExists);
}

#[test]
fn role_changes_record_the_previous_role_and_are_idempotent() {
    given::<User>(&[created(Role::Viewer)])
        .when(UserCommand::ChangeRole { role: Role::Admin })
        .then(&[UserEvent::UserRoleChanged { role: Role::Admin, previous_role: Role::Viewer }]);
    given::<User>(&[created(Role::Admin)]).when(UserCommand::ChangeRole { role: Role::Admin }).then(&[]);
    given::<User>(&[]).when(UserCommand::ChangeRole { role: Role::Admin }).then_error(IdentityError::UserNotFound);
}

#[test]
fn a_disabled_user_cannot_change_but_disabling_again_is_harmless() {
    let history = [created(Role::Admin), UserEvent::UserDisabled { reason: None }];
    given::<User>(&history)
        .when(UserCommand::ChangeRole { role: Role::Viewer })
        .then_error(IdentityError::UserDisabled);
    given::<User>(&history)
        .when(UserCommand::ChangePassword { password_hash: secret(11) })
        .then_error(IdentityError::UserDisabled);
    given::<User>(&history).when(UserCommand::Disable { reason: None }).then(&[]);
}

#[test]
fn a_password_change_points_at_the_new_secret() {
    given::<User>(&[created(Role::Viewer)])
        .when(UserCommand::ChangePassword { password_hash: secret(11) })
        .then(&[UserEvent::UserPasswordChanged { password_hash: secret(11) }]);
    let state = User::fold(&[created(Role::Viewer), UserEvent::UserPasswordChanged { password_hash: secret(11) }]);
    assert!(matches!(state, UserState::Active { password_secret, .. } if password_secret == Uuid::from_u128(11)));
}

#[test]
fn usernames_are_validated_and_normalised() {
    assert_eq!(Username::parse(" Ada.Lovelace ").unwrap().as_str(), "ada.lovelace");
    for bad in ["", "a b", "ädmin", &"x".repeat(65), "root;drop"] {
        assert!(matches!(Username::parse(bad), Err(IdentityError::InvalidUsername(_))), "{bad}");
    }
}

#[test]
fn passwords_need_a_minimum_length() {
    assert_eq!(check_password_policy("short"), Err(IdentityError::PasswordTooShort));
    assert_eq!(check_password_policy(&"x".repeat(2000)), Err(IdentityError::PasswordTooLong));
    assert_eq!(check_password_policy("correct horse battery"), Ok(()));
}

#[test]
fn a_username_can_be_reserved_once() {
    let ada = Username::parse("ada").unwrap();
    let reserve = ReserveUsername { username: ada.clone(), user_id: Uuid::from_u128(2) };
    given::<UsernameReservation>(&[])
        .when(reserve.clone())
        .then(&[UsernameEvent::UsernameReserved { username: ada.clone(), user_id: Uuid::from_u128(2) }]);
    given::<UsernameReservation>(&[UsernameEvent::UsernameReserved { username: ada, user_id: Uuid::from_u128(1) }])
        .when(reserve)
        .then_error(IdentityError::UsernameTaken("ada".into()));
}

fn issue(owner_role: Role, role: Role, expires_in: Option<Duration>) -> ApiKeyCommand {
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    ApiKeyCommand::Issue {
        key_id: Uuid::from_u128(5),
        owner_id: Uuid::from_u128(1),
        owner_role,
        name: "ci".into(),
        role,
        token_sha256: "ab".repeat(32),
        expires_at: expires_in.map(|d| now + d),
        now,
    }
}

#[test]
fn api_keys_never_outrank_their_creator_nor_expire_in_the_past() {
    given::<ApiKey>(&[])
        .when(issue(Role::Operator, Role::Admin, None))
        .then_error(IdentityError::ApiKeyRoleAboveCreator { creator: Role::Operator });
    given::<ApiKey>(&[])
        .when(issue(Role::Admin, Role::Viewer, Some(Duration::seconds(-1))))
        .then_error(IdentityError::ExpiryInThePast);
    let ok =
        ApiKey::decide(&issue(Role::Operator, Role::Operator, Some(Duration::days(30))), &ApiKeyState::Absent).unwrap();
    assert!(matches!(&ok[..], [ApiKeyEvent::ApiKeyIssued { role: Role::Operator, .. }]));
}

#[test]
fn api_keys_are_revoked_once() {
    let issued = ApiKey::decide(&issue(Role::Admin, Role::Viewer, None), &ApiKeyState::Absent).unwrap();
    given::<ApiKey>(&issued).when(ApiKeyCommand::Revoke).then(&[ApiKeyEvent::ApiKeyRevoked {}]);
    given::<ApiKey>(&[issued[0].clone(), ApiKeyEvent::ApiKeyRevoked {}]).when(ApiKeyCommand::Revoke).then(&[]);
    given::<ApiKey>(&[]).when(ApiKeyCommand::Revoke).then_error(IdentityError::ApiKeyNotFound);
}

#[test]
fn login_attempts_are_recorded_with_their_outcome() {
    let ada = Username::parse("ada").unwrap();
    let attempt = |user_id, outcome| RecordLogin { username: ada.clone(), user_id, source: "10.0.0.1".into(), outcome };
    given::<Login>(&[]).when(attempt(Some(Uuid::from_u128(1)), Ok(()))).then(&[LoginEvent::LoginSucceeded {
        username: ada.clone(),
        user_id: Uuid::from_u128(1),
        source: "10.0.0.1".into(),
    }]);
    given::<Login>(&[]).when(attempt(None, Ok(()))).then(&[LoginEvent::LoginFailed {
        username: ada.clone(),
        user_id: None,
        source: "10.0.0.1".into(),
        reason: LoginFailure::UnknownUser,
    }]);
    given::<Login>(&[]).when(attempt(Some(Uuid::from_u128(1)), Err(LoginFailure::WrongPassword))).then(&[
        LoginEvent::LoginFailed {
            username: ada,
            user_id: Some(Uuid::from_u128(1)),
            source: "10.0.0.1".into(),
            reason: LoginFailure::WrongPassword,
        },
    ]);
}

#[test]
fn sessions_start_once_and_end_once() {
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let start = |expires_at| SessionCommand::Start {
        session_id: Uuid::from_u128(7),
        user_id: Uuid::from_u128(1),
        token_sha256: "cd".repeat(32),
        password_secret: Uuid::from_u128(10),
        expires_at,
        source: "127.0.0.1".into(),
        now,
    };
    given::<Session>(&[]).when(start(now)).then_error(IdentityError::ExpiryInThePast);
    let started = Session::decide(&start(now + Duration::hours(1)), &SessionState::Absent).unwrap();
    assert!(matches!(&started[..], [SessionEvent::SessionStarted { password_secret, .. }]
        if *password_secret == Uuid::from_u128(10)));
    let logout = SessionCommand::End { reason: SessionEndReason::Logout };
    given::<Session>(&started)
        .when(logout.clone())
        .then(&[SessionEvent::SessionEnded { reason: SessionEndReason::Logout }]);
    given::<Session>(&[started[0].clone(), SessionEvent::SessionEnded { reason: SessionEndReason::Logout }])
        .when(logout.clone())
        .then(&[]);
    given::<Session>(&[]).when(logout).then_error(IdentityError::SessionNotFound);
}

#[test]
fn events_split_into_stored_type_and_payload_and_back() {
    let event = created(Role::Admin);
    let (event_type, payload) = event.to_parts();
    assert_eq!(event_type, "UserCreated");
    assert_eq!(payload["role"], "ADMIN");
    assert_eq!(UserEvent::from_parts(event_type, payload).unwrap(), event);
    let revoked = ApiKeyEvent::ApiKeyRevoked {};
    let (t, p) = revoked.to_parts();
    assert_eq!(ApiKeyEvent::from_parts(t, p).unwrap(), revoked);
}
