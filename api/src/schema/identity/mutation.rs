//! Signing in and out, users, passwords and API keys.

use juniper::ID;
use unity_commands::{identity::IdentityCommandError, vault::VaultError};
use unity_domain::{
    identity::{LoginFailure, RecordLogin, Role, Username},
    Actor,
};
use unity_projections::identity::{api_key_by_id, user_by_id, user_by_username};

use super::types::*;
use crate::auth::Credential;
use crate::{
    auth::Principal,
    errors::{ApiError, Code},
    schema::{common::*, identity, Context},
};

pub async fn login(ctx: &Context, username: String, password: String) -> Result<Session, ApiError> {
    let state = &ctx.state;
    let denied = || ApiError::new(Code::Unauthenticated, "wrong username or password");
    let Ok(name) = Username::parse(&username) else {
        state.commands.identity.burn_password_check(&password).await;
        state.metrics.login_failures.inc();
        return Err(denied());
    };
    let anonymous =
        unity_commands::metadata(Actor { kind: "anonymous".into(), id: None, name: name.as_str().into() }, "api");
    let attempt =
        |user_id, outcome| RecordLogin { username: name.clone(), user_id, source: ctx.source.to_string(), outcome };
    if let Err(throttled) = state.throttle.check(name.as_str(), &ctx.source) {
        state.metrics.login_failures.inc();
        if throttled.first_refusal {
            state.commands.identity.record_login(attempt(None, Err(LoginFailure::RateLimited)), &anonymous).await?;
        }
        let seconds = throttled.retry_after.as_secs().max(1);
        return Err(ApiError {
            code: Code::Unauthenticated,
            message: format!("too many failed logins; try again in {seconds} s"),
            retry_after: Some(seconds),
        });
    }
    let user = user_by_username(state.store.pool(), name.as_str()).await?;
    let outcome = match &user {
        None => {
            state.commands.identity.burn_password_check(&password).await;
            Err(LoginFailure::UnknownUser)
        }
        Some(u) => match state.commands.identity.verify_password(&u.password_hash, &password).await {
            // A password changed a moment ago has its old hash shredded: simply not a match.
            Ok(false) | Err(IdentityCommandError::Vault(VaultError::Shredded(_))) => Err(LoginFailure::WrongPassword),
            Ok(true) if u.disabled => Err(LoginFailure::UserDisabled),
            Ok(true) => Ok(()),
            Err(e) => return Err(e.into()),
        },
    };
    let user_id = user.as_ref().map(|u| u.id);
    let Some(user) = user.filter(|_| outcome.is_ok()) else {
        state.throttle.record_failure(name.as_str(), &ctx.source);
        state.metrics.login_failures.inc();
        state.commands.identity.record_login(attempt(user_id, outcome), &anonymous).await?;
        return Err(denied());
    };
    state.throttle.record_success(name.as_str());
    let metadata = unity_commands::metadata(Actor::user(user.id, &user.username), "api");
    state.commands.identity.record_login(attempt(Some(user.id), Ok(())), &metadata).await?;
    let session = state
        .commands
        .identity
        .start_session(user.id, user.password_hash.secret_id, state.config.session_lifetime, &ctx.source, &metadata)
        .await?;
    ctx.state.settle(session.appended.as_ref()).await?;
    Ok(Session { token: session.token, expires_at: session.expires_at, user: identity::user(ctx, user.id).await? })
}

pub async fn logout(ctx: &Context, p: &Principal) -> Result<bool, ApiError> {
    let Credential::Session(session_id) = p.credential else {
        return Err(ApiError::bad_input("logout ends a session; an API key is revoked with revokeApiKey"));
    };
    let appended = ctx.state.commands.identity.end_session(session_id, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    Ok(true)
}

pub async fn create_user(ctx: &Context, p: &Principal, input: CreateUserInput) -> Result<User, ApiError> {
    let (user_id, appended) = ctx
        .state
        .commands
        .identity
        .create_user(&input.username, &input.password, input.role.into(), &ctx.metadata(p))
        .await?;
    ctx.state.settle(Some(&appended)).await?;
    identity::user(ctx, user_id).await
}

pub async fn change_user_role(ctx: &Context, p: &Principal, input: ChangeUserRoleInput) -> Result<User, ApiError> {
    let user_id = parse_id("userId", &input.user_id)?;
    let appended = ctx.state.commands.identity.change_role(user_id, input.role.into(), &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    identity::user(ctx, user_id).await
}

pub async fn disable_user(ctx: &Context, p: &Principal, user_id: ID) -> Result<User, ApiError> {
    let user_id = parse_id("userId", &user_id)?;
    if user_id == p.user_id {
        return Err(ApiError::bad_input("you cannot disable yourself"));
    }
    let appended = ctx.state.commands.identity.disable_user(user_id, None, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    identity::user(ctx, user_id).await
}

pub async fn change_password(ctx: &Context, p: &Principal, input: ChangePasswordInput) -> Result<bool, ApiError> {
    let state = &ctx.state;
    let user = user_by_id(state.store.pool(), p.user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    if !state.commands.identity.verify_password(&user.password_hash, &input.current_password).await? {
        return Err(ApiError::bad_input("the current password is wrong"));
    }
    let appended = state.commands.identity.change_password(p.user_id, &input.new_password, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    Ok(true)
}

pub async fn create_api_key(
    ctx: &Context,
    p: &Principal,
    input: CreateApiKeyInput,
) -> Result<ApiKeyWithSecret, ApiError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_input("an API key needs a name of 1 to 100 characters"));
    }
    let issued = ctx
        .state
        .commands
        .identity
        .issue_api_key(p.user_id, p.role, name, input.role.into(), input.expires_at, &ctx.metadata(p))
        .await?;
    ctx.state.settle(issued.appended.as_ref()).await?;
    let key =
        api_key_by_id(ctx.state.store.pool(), issued.key_id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
    Ok(ApiKeyWithSecret { api_key: key.try_into()?, secret: issued.token })
}

pub async fn revoke_api_key(ctx: &Context, p: &Principal, id: ID) -> Result<ApiKey, ApiError> {
    let key_id = parse_id("id", &id)?;
    let pool = ctx.state.store.pool();
    let key = api_key_by_id(pool, key_id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
    if key.owner_id != p.user_id && p.role < Role::Admin {
        return Err(ApiError::forbidden("ADMIN"));
    }
    let appended = ctx.state.commands.identity.revoke_api_key(key_id, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    api_key_by_id(pool, key_id).await?.ok_or_else(|| ApiError::not_found("API key"))?.try_into()
}
