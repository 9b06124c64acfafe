//! The one table of error codes: every failure the API reports carries `extensions.code` from
//! DESIGN.md §6. Caller mistakes say what was wrong; failures inside Unity are logged with their
//! details and reach the client only as `INTERNAL` or `UNAVAILABLE`.

use juniper::{graphql_value, FieldError, IntoFieldError, ScalarValue};
use unity_commands::{handler::CommandError, identity::IdentityCommandError, store::StoreError, vault::VaultError};
use unity_domain::identity::IdentityError;
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

impl ApiError {
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

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> ApiError {
        use IdentityError as E;
        let code = match &e {
            E::InvalidUsername(_) | E::PasswordTooShort | E::PasswordTooLong | E::ExpiryInThePast => Code::BadUserInput,
            E::ApiKeyRoleAboveCreator { .. } => Code::Forbidden,
            E::UsernameTaken(_) | E::UserAlreadyExists | E::ApiKeyAlreadyExists | E::SessionAlreadyExists => {
                Code::Conflict
            }
            E::UserDisabled => Code::Conflict,
            E::UserNotFound | E::ApiKeyNotFound | E::SessionNotFound => Code::NotFound,
        };
        ApiError::new(code, e.to_string())
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

impl From<IdentityCommandError> for ApiError {
    fn from(e: IdentityCommandError) -> ApiError {
        match e {
            IdentityCommandError::Rejected(e) => e.into(),
            IdentityCommandError::Command(CommandError::Store(e)) => e.into(),
            IdentityCommandError::Command(CommandError::Contended(_)) => {
                ApiError::new(Code::Conflict, "too many concurrent changes to this record; try again")
            }
            IdentityCommandError::Command(e) => ApiError::internal("command", &e),
            IdentityCommandError::Vault(VaultError::Store(e)) => e.into(),
            IdentityCommandError::Vault(e) => ApiError::internal("vault", &e),
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
