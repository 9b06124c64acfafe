//! X.509: internal certificate authorities and the certificates Unity keeps (issued by those CAs,
//! obtained over ACME, or imported).
//!
//! Two aggregates:
//! - `x509_ca`: a CA's creation (root or intermediate); its key is sealed in the vault;
//! - `certificate`: one certificate's life: issued or imported, revoked.
//!
//! Certificates and keys are made and parsed outside (unity-commands, rcgen and x509-parser);
//! what arrives here are their facts and the sealed private key.

mod ca;
mod certificate;
mod facts;

pub use ca::*;
pub use certificate::*;
pub use facts::*;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("no such certificate authority")]
    CaNotFound,
    #[error("a certificate authority with this id exists already")]
    CaExists,
    #[error("no such certificate")]
    NotFound,
    #[error("a certificate with this id exists already")]
    Exists,
    #[error("this certificate is revoked")]
    Revoked,
    #[error("{0}")]
    Invalid(String),
}

impl crate::Refuse for X509Error {
    fn refusal(&self) -> crate::Refusal {
        use crate::Refusal as R;
        match self {
            X509Error::CaNotFound | X509Error::NotFound => R::NotFound,
            X509Error::CaExists | X509Error::Exists | X509Error::Revoked => R::Conflict,
            X509Error::Invalid(_) => R::Invalid,
        }
    }
}

/// Validity in days: 1 to 36,500.
pub fn check_validity_days(days: i64) -> Result<(), X509Error> {
    if !(1..=36_500).contains(&days) {
        return Err(X509Error::Invalid(format!("validityDays must be between 1 and 36500, not {days}")));
    }
    Ok(())
}

/// A DNS name in a SAN: labels of letters, digits and hyphens, optionally a leading `*.`.
pub fn check_dns_name(name: &str) -> Result<(), X509Error> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let ok = !bare.is_empty()
        && name.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(X509Error::Invalid(format!("'{}' is not a DNS name", name.chars().take(80).collect::<String>())))
    }
}

#[cfg(test)]
// Expected events are built once and cloned into each expectation: clearer than from_ref here.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests;
