//! ACME: accounts at a directory (Let's Encrypt, ZeroSSL, step-ca, Pebble, …), orders for
//! certificates, and the DNS providers that answer DNS-01 challenges.
//!
//! Three aggregates, all driven by the same request/outcome shape as servers: the API records
//! what is wanted (`…Requested`), the ACME reactor in unity-collectors talks to the directory and
//! records what happened. An order's progress (created, each challenge published, each
//! authorization valid, completed or failed) is a series of events on its own stream, so the
//! audit log and event consumers see it step by step.
//!
//! Nothing here is secret: an account's key and an EAB or TSIG key are `SecretRef`s; a
//! challenge's key authorization is public by design (the directory fetches it over plain HTTP
//! or reads it from public DNS).

mod account;
mod dns_provider;
mod order;

pub use account::*;
pub use dns_provider::*;
pub use order::*;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcmeError {
    #[error("no such ACME account")]
    AccountNotFound,
    #[error("this ACME account is not registered ({0})")]
    AccountNotRegistered(String),
    #[error("no such ACME order")]
    OrderNotFound,
    #[error("no such DNS provider")]
    DnsProviderNotFound,
    #[error("a record with this id exists already")]
    Exists,
    #[error("this ACME order is finished already")]
    OrderFinished,
    #[error("{0}")]
    Invalid(String),
}

impl crate::Refuse for AcmeError {
    fn refusal(&self) -> crate::Refusal {
        use crate::Refusal as R;
        match self {
            AcmeError::AccountNotFound | AcmeError::OrderNotFound | AcmeError::DnsProviderNotFound => R::NotFound,
            AcmeError::Exists | AcmeError::OrderFinished | AcmeError::AccountNotRegistered(_) => R::Conflict,
            AcmeError::Invalid(_) => R::Invalid,
        }
    }
}

fn invalid(message: impl Into<String>) -> AcmeError {
    AcmeError::Invalid(message.into())
}

#[cfg(test)]
mod tests;
