//! The GraphQL types of the core operations: scalars, objects, inputs and Relay connections.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use juniper::{GraphQLEnum, GraphQLInputObject, GraphQLObject, GraphQLScalar, ScalarValue, Value, ID};
use unity_domain::identity::Role as DomainRole;
use unity_projections::{
    audit::AuditEntry as StoredAuditEntry,
    identity::{ApiKeyRow, UserRow},
};

use crate::{auth::parse_role, errors::ApiError, tail::LiveEvent};

/// A 64-bit integer (log positions), sent as a string of decimal digits because GraphQL's `Int`
/// has 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLScalar)]
#[graphql(name = "BigInt", to_output_with = Self::decimal, from_input_with = Self::from_input, parse_token(String))]
pub struct BigInt(pub i64);

impl BigInt {
    fn decimal(&self) -> String {
        self.0.to_string()
    }

    fn from_input(s: &str) -> Result<BigInt, Box<str>> {
        s.parse().map(BigInt).map_err(|_| format!("'{s}' is not a 64-bit integer").into())
    }
}

/// Arbitrary JSON (event payloads), written out as JSON itself.
///
/// juniper's derived scalars can only produce scalar values, so this output type resolves by hand
/// and borrows its schema entry from [`JsonScalar`], the derived scalar of the same name.
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub serde_json::Value);

/// The schema's `JSON` scalar as an input (a string of JSON text).
#[derive(Clone, Debug, PartialEq, GraphQLScalar)]
#[graphql(name = "JSON", to_output_with = Self::to_output, from_input_with = Self::from_input, parse_token(String))]
pub struct JsonScalar(serde_json::Value);

impl JsonScalar {
    fn to_output(&self) -> String {
        self.0.to_string()
    }

    fn from_input(s: &str) -> Result<JsonScalar, Box<str>> {
        serde_json::from_str(s).map(JsonScalar).map_err(|e| format!("not JSON: {e}").into())
    }
}

/// Integers beyond 32 bits become floats, exact up to 2^53.
fn json_value<S: ScalarValue>(v: &serde_json::Value) -> Value<S> {
    match v {
        serde_json::Value::Null => Value::null(),
        serde_json::Value::Bool(b) => Value::scalar(*b),
        serde_json::Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Value::scalar(i),
            None => Value::scalar(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::scalar(s.clone()),
        serde_json::Value::Array(items) => Value::list(items.iter().map(json_value).collect()),
        serde_json::Value::Object(fields) => {
            Value::object(fields.iter().map(|(k, v)| (k.as_str(), json_value(v))).collect())
        }
    }
}

impl<S: ScalarValue> juniper::GraphQLType<S> for Json {
    fn name(info: &()) -> Option<juniper::ArcStr> {
        <JsonScalar as juniper::GraphQLType<S>>::name(info)
    }

    fn meta(info: &(), registry: &mut juniper::Registry<S>) -> juniper::meta::MetaType<S> {
        <JsonScalar as juniper::GraphQLType<S>>::meta(info, registry)
    }
}

impl<S: ScalarValue> juniper::GraphQLValue<S> for Json {
    type Context = ();
    type TypeInfo = ();

    fn type_name(&self, info: &()) -> Option<juniper::ArcStr> {
        <Self as juniper::GraphQLType<S>>::name(info)
    }

    fn resolve(
        &self,
        _: &(),
        _: Option<&[juniper::Selection<'_, S>]>,
        _: &juniper::Executor<'_, '_, (), S>,
    ) -> juniper::ExecutionResult<S> {
        Ok(json_value(&self.0))
    }
}

impl<S: ScalarValue + Send + Sync> juniper::GraphQLValueAsync<S> for Json {
    fn resolve_async<'b>(
        &'b self,
        info: &'b (),
        selection_set: Option<&'b [juniper::Selection<'_, S>]>,
        executor: &'b juniper::Executor<'_, '_, (), S>,
    ) -> juniper::BoxFuture<'b, juniper::ExecutionResult<S>> {
        Box::pin(futures::future::ready(juniper::GraphQLValue::resolve(self, info, selection_set, executor)))
    }
}

impl<S: ScalarValue> juniper::marker::IsOutputType<S> for Json {}

impl<S: ScalarValue> juniper::macros::reflect::BaseType<S> for Json {
    const NAME: juniper::macros::reflect::Type = "JSON";
}

impl<S: ScalarValue> juniper::macros::reflect::BaseSubTypes<S> for Json {
    const NAMES: juniper::macros::reflect::Types = &["JSON"];
}

impl<S: ScalarValue> juniper::macros::reflect::WrappedType<S> for Json {
    const VALUE: juniper::macros::reflect::WrappedValue = 1;
}

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
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
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

/// Who caused an event: a user (id and username), or the system (no id; `username` names the part).
#[derive(Clone, Debug, GraphQLObject)]
pub struct Actor {
    pub id: Option<ID>,
    pub username: Option<String>,
    pub kind: Option<String>,
}

/// Declares the two views of a logged event, `AuditEntry` (paged) and `Event` (live), with the
/// same fields, so subscribers and auditors read one shape.
macro_rules! event_view {
    ($($(#[$meta:meta])* $name:ident),*) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, GraphQLObject)]
        pub struct $name {
            pub position: BigInt,
            pub event_id: ID,
            pub stream_id: String,
            pub stream_type: String,
            pub stream_version: i32,
            pub event_type: String,
            pub recorded_at: DateTime<Utc>,
            pub actor: Actor,
            /// The event's data; sealed secrets show their id, never their ciphertext.
            pub payload: Json,
            /// SHA-256 of the event in its stream's hash chain (hex).
            pub hash: String,
        }
    )*};
}

event_view!(
    /// One event of the audit log.
    AuditEntry,
    /// One event as it is appended.
    Event
);

fn actor(kind: Option<String>, id: Option<String>, name: Option<String>) -> Actor {
    Actor { id: id.map(ID::new), username: name, kind }
}

impl From<StoredAuditEntry> for AuditEntry {
    fn from(e: StoredAuditEntry) -> AuditEntry {
        AuditEntry {
            position: BigInt(e.position),
            event_id: ID::new(e.event_id.to_string()),
            stream_id: e.stream_id,
            stream_type: e.stream_type,
            stream_version: i32::try_from(e.stream_version).unwrap_or(i32::MAX),
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            actor: actor(e.actor_kind, e.actor_id, e.actor_name),
            payload: Json(crate::tail::redact(&e.payload)),
            hash: e.hash,
        }
    }
}

impl From<&LiveEvent> for Event {
    fn from(e: &LiveEvent) -> Event {
        Event {
            position: BigInt(e.cursor.global_position),
            event_id: ID::new(e.event_id.to_string()),
            stream_id: e.stream_id.clone(),
            stream_type: e.stream_type.clone(),
            stream_version: i32::try_from(e.stream_version).unwrap_or(i32::MAX),
            event_type: e.event_type.clone(),
            recorded_at: e.recorded_at,
            actor: actor(e.actor_kind.clone(), e.actor_id.clone(), e.actor_name.clone()),
            payload: Json(e.payload.clone()),
            hash: e.hash.clone(),
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AuditEntryEdge {
    pub cursor: String,
    pub node: AuditEntry,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AuditEntryConnection {
    pub edges: Vec<AuditEntryEdge>,
    pub page_info: PageInfo,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct ProjectionStatus {
    pub name: String,
    /// The global position of the last event applied.
    pub position: BigInt,
    /// Committed events not yet applied.
    pub lag: BigInt,
    /// RUNNING or STOPPED.
    pub state: String,
    /// Why a stopped projection stopped.
    pub error: Option<String>,
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

#[derive(Clone, Debug, Default, GraphQLInputObject)]
#[graphql(name = "AuditFilter")]
pub struct AuditFilterInput {
    pub stream_id: Option<String>,
    pub stream_type: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub actor_id: Option<ID>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, GraphQLInputObject)]
pub struct EventFilter {
    pub stream_types: Option<Vec<String>>,
    pub event_types: Option<Vec<String>>,
}

impl EventFilter {
    pub fn matches(&self, e: &LiveEvent) -> bool {
        let within =
            |allowed: &Option<Vec<String>>, value: &str| allowed.as_ref().is_none_or(|a| a.iter().any(|v| v == value));
        within(&self.stream_types, &e.stream_type) && within(&self.event_types, &e.event_type)
    }
}

/// Page sizes: `first` defaults to 50 and may not exceed 100.
pub fn page_size(first: Option<i32>) -> Result<i64, ApiError> {
    match first {
        None => Ok(50),
        Some(n @ 1..=100) => Ok(i64::from(n)),
        Some(n) => Err(ApiError::bad_input(format!("first must be between 1 and 100, not {n}"))),
    }
}

/// Cuts rows fetched with `limit + 1` to one page: each row with its cursor, and the page info.
pub fn paginate<T>(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> (Vec<(String, T)>, PageInfo) {
    let has_next_page = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let page: Vec<(String, T)> = rows.into_iter().map(|r| (cursor(&r), r)).collect();
    let end_cursor = page.last().map(|(c, _)| c.clone());
    (page, PageInfo { has_next_page, end_cursor })
}

/// Connection cursors: opaque to clients, `<kind>:<value>` in URL-safe base64 inside.
pub fn encode_cursor(kind: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{value}"))
}

pub fn decode_cursor(kind: &str, cursor: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_input(format!("'{}' is not a cursor of this list", cursor.chars().take(60).collect::<String>()))
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    text.strip_prefix(kind).and_then(|rest| rest.strip_prefix(':')).map(str::to_owned).ok_or_else(bad)
}

pub fn parse_id(what: &str, id: &ID) -> Result<uuid::Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_input(format!("{what} '{}' is not a UUID", id.chars().take(60).collect::<String>())))
}
