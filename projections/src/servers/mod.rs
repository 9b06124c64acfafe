//! Servers, the requests carried out on them, where every key and CA key is (and was) installed,
//! and certificate deployments, as the API reads them. The tables belong to the credentials
//! projection (`crate::credentials`), which applies server events with `apply::apply_server`.

pub(crate) mod apply;
mod queries;

pub use queries::*;
