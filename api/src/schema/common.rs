//! What every domain's part of the schema uses: scalars, pages and cursors, ids.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use juniper::{GraphQLObject, GraphQLScalar, ScalarValue, Value, ID};

use crate::errors::ApiError;

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

#[derive(Clone, Debug, GraphQLObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
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

/// The id in a list's cursor (a page's `endCursor`), for lists ordered by a uuid.
pub fn uuid_cursor(kind: &str, after: Option<String>) -> Result<Option<uuid::Uuid>, ApiError> {
    let after = after.map(|c| decode_cursor(kind, &c)).transpose()?;
    after.map(|a| a.parse::<uuid::Uuid>().map_err(|_| ApiError::bad_input("bad cursor"))).transpose()
}

pub fn parse_id(what: &str, id: &ID) -> Result<uuid::Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_input(format!("{what} '{}' is not a UUID", id.chars().take(60).collect::<String>())))
}

/// A read model's uuid as a GraphQL id.
pub fn id(uuid: uuid::Uuid) -> ID {
    ID::new(uuid.to_string())
}

/// A GraphQL enum mirroring a domain enum variant for variant, with the conversion into it: one
/// list of variants instead of two kept in step (a variant the domain lacks does not compile).
macro_rules! mirror_enum {
    ($(#[$attr:meta])* pub enum $name:ident => $domain:ident { $($(#[$vattr:meta])* $variant:ident),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, juniper::GraphQLEnum)]
        $(#[$attr])*
        pub enum $name {
            $($(#[$vattr])* $variant,)+
        }

        impl From<$name> for $domain {
            fn from(value: $name) -> $domain {
                match value {
                    $($name::$variant => $domain::$variant,)+
                }
            }
        }
    };
}
pub(crate) use mirror_enum;
