//! Users, sessions and API keys as the schema shows them, and their inputs.

use chrono::{DateTime, Utc};
use juniper::{GraphQLEnum, GraphQLInputObject, GraphQLObject, ID};
use unity_domain::identity::Role as DomainRole;
use unity_projections::identity::{ApiKeyRow, UserRow};

use crate::auth::parse_role;
use crate::{errors::ApiError, schema::common::*};

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
#[graphql(name = "Role")]
pub enum RoleValue {
    Admin,
    Operator,
    Viewer,
}

impl From<RoleValue> for DomainRole {
    fn from(r: RoleValue) -> DomainRole {
        match r {
            RoleValue::Admin => DomainRole::Admin,
            RoleValue::Operator => DomainRole::Operator,
            RoleValue::Viewer => DomainRole::Viewer,
        }
    }
}

impl From<DomainRole> for RoleValue {
    fn from(r: DomainRole) -> RoleValue {
        match r {
            DomainRole::Admin => RoleValue::Admin,
            DomainRole::Operator => RoleValue::Operator,
            DomainRole::Viewer => RoleValue::Viewer,
        }
    }
}

fn stored_role(stored: &str) -> Result<RoleValue, ApiError> {
    parse_role(stored).map(RoleValue::from)
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct User {
    pub id: ID,
    pub username: String,
    pub role: RoleValue,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl TryFrom<UserRow> for User {
    type Error = ApiError;
    fn try_from(u: UserRow) -> Result<User, ApiError> {
        Ok(User {
            id: ID::new(u.id.to_string()),
            username: u.username,
            role: stored_role(&u.role)?,
            disabled: u.disabled,
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        })
    }
}

/// A signed-in session: send `token` as `Authorization: Bearer <token>`.
#[derive(Clone, Debug, GraphQLObject)]
pub struct Session {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct ApiKey {
    pub id: ID,
    pub name: String,
    pub role: RoleValue,
    pub owner_id: ID,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = ApiError;
    fn try_from(k: ApiKeyRow) -> Result<ApiKey, ApiError> {
        Ok(ApiKey {
            id: ID::new(k.id.to_string()),
            name: k.name,
            role: stored_role(&k.role)?,
            owner_id: ID::new(k.owner_id.to_string()),
            expires_at: k.expires_at,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        })
    }
}

/// A new API key and its secret, which is shown this once and never again.
#[derive(Clone, Debug, GraphQLObject)]
pub struct ApiKeyWithSecret {
    pub api_key: ApiKey,
    pub secret: String,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct UserEdge {
    pub cursor: String,
    pub node: User,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct UserConnection {
    pub edges: Vec<UserEdge>,
    pub page_info: PageInfo,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct CreateUserInput {
    pub username: String,
    pub password: String,
    pub role: RoleValue,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct ChangeUserRoleInput {
    pub user_id: ID,
    pub role: RoleValue,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct ChangePasswordInput {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    pub role: RoleValue,
    pub expires_at: Option<DateTime<Utc>>,
}
