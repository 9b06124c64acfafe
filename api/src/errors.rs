//! The table of error codes: every failure the API reports carries `extensions.code` from
//! DESIGN.md §6. A domain's refusal says its own kind (`unity_domain::Refusal`, beside each
//! domain error) and `Code::from` maps the kinds; the store, vault and database failures every
//! domain shares are mapped here too. Each domain's command error is turned into an `ApiError`
//! beside the domain's part of the schema (`schema/<domain>/mod.rs`), from these pieces.
//! Caller mistakes say what was wrong; failures inside Unity are logged with their details and
//! reach the client only as `INTERNAL` or `UNAVAILABLE`.

use juniper::{graphql_value, FieldError, IntoFieldError, ScalarValue};
use unity_commands::{handler::CommandError, store::StoreError, vault::VaultError};
use unity_domain::{Refusal, Refuse};
use unity_projections::engine::EngineError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds until a refused login may be tried again.
    pub retry_after: Option<u64>,
}

impl From<Refusal> for Code {
    fn from(refusal: Refusal) -> Code {
        match refusal {
            Refusal::Invalid => Code::BadUserInput,
            Refusal::NotFound => Code::NotFound,
            Refusal::Conflict => Code::Conflict,
            Refusal::Forbidden => Code::Forbidden,
        }
    }
}

impl ApiError {
    /// The domain said no: its own message, with the code of its kind of refusal.
    pub fn refused(e: &impl Refuse) -> ApiError {
        ApiError::new(e.refusal().into(), e.to_string())
    }

    /// Optimistic concurrency lost too many times in a row.
    pub fn contended() -> ApiError {
        ApiError::new(Code::Conflict, "too many concurrent changes to this record; try again")
    }

    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), retry_after: None }
    }

    pub fn bad_input(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::BadUserInput, message)
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(Code::Unauthenticated, "sign in first: send Authorization: Bearer <token>")
    }

    pub fn forbidden(needed: &str) -> ApiError {
        ApiError::new(Code::Forbidden, format!("this needs the {needed} role"))
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(Code::NotFound, format!("no such {what}"))
    }

    /// Something broke inside: the details go to the log, the client gets a reference-free line.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, context, "Request failed inside Unity.");
        ApiError::new(Code::Internal, "internal error (logged on the server)")
    }

    pub fn unavailable(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %error, context, "A dependency is unavailable.");
        ApiError::new(Code::Unavailable, "Unity's database is unavailable; try again shortly")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl<S: ScalarValue> IntoFieldError<S> for ApiError {
    fn into_field_error(self) -> FieldError<S> {
        let code = self.code.as_str();
        let extensions = match self.retry_after {
            Some(seconds) => {
                graphql_value!({ "code": code, "retryAfterSeconds": (seconds.min(i32::MAX as u64) as i32) })
            }
            None => graphql_value!({ "code": code }),
        };
        FieldError::new(self.message, extensions)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                ApiError::unavailable("database", &e)
            }
            e => ApiError::internal("database", &e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Database(e) => e.into(),
            StoreError::Conflict { .. } => {
                ApiError::new(Code::Conflict, "someone else changed this at the same moment; try again")
            }
            e => ApiError::internal("event store", &e),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Store(e) => e.into(),
            e => ApiError::internal("projections", &e),
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> ApiError {
        match e {
            VaultError::Store(e) => e.into(),
            e => ApiError::internal("vault", &e),
        }
    }
}

impl<E: Refuse> From<CommandError<E>> for ApiError {
    fn from(e: CommandError<E>) -> ApiError {
        match e {
            CommandError::Rejected(e) => ApiError::refused(&e),
            CommandError::Contended(_) => ApiError::contended(),
            CommandError::Store(e) => e.into(),
            e => ApiError::internal("command", &e),
        }
    }
}
