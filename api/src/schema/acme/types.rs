//! ACME accounts, orders and DNS providers as the schema shows them, and their inputs.

use chrono::{DateTime, Utc};
use juniper::{GraphQLEnum, GraphQLInputObject, GraphQLObject, ID};
use unity_commands::acme::AcmePreset;
use unity_domain::acme::{ChallengeKind, TsigAlgorithm};
use unity_projections::acme::{AcmeAccountRow, AuthorizationRow, DnsProviderRow};

use crate::schema::common::mirror_enum;
use crate::schema::{certificates, common::*};

mirror_enum! {
    #[graphql(name = "AcmePreset")]
    pub enum AcmePresetValue => AcmePreset {
        LetsEncrypt,
        LetsEncryptStaging,
        #[graphql(name = "ZEROSSL")]
        ZeroSsl,
        StepCa,
    }
}

mirror_enum! {
    #[graphql(name = "AcmeChallenge")]
    pub enum AcmeChallengeValue => ChallengeKind {
        #[graphql(name = "HTTP01")]
        Http01,
        #[graphql(name = "DNS01")]
        Dns01,
    }
}

mirror_enum! {
    #[graphql(name = "TsigAlgorithm")]
    pub enum TsigAlgorithmValue => TsigAlgorithm {
        HmacSha256,
        HmacSha512,
    }
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct EabInput {
    pub kid: String,
    /// The HMAC key as the directory shows it (base64url).
    pub hmac_key: String,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct RegisterAcmeAccountInput {
    pub name: String,
    /// A well-known directory; or give `directoryUrl`. STEP_CA takes the CA's URL in
    /// `directoryUrl` and builds `{url}/acme/{stepCaProvisioner}/directory`.
    pub preset: Option<AcmePresetValue>,
    pub directory_url: Option<String>,
    /// step-ca's ACME provisioner name (default "acme").
    pub step_ca_provisioner: Option<String>,
    pub email: Option<String>,
    /// External account binding (ZeroSSL, step-ca with EAB, Google Trust Services).
    pub eab: Option<EabInput>,
    /// Agree to the directory's terms of service (Let's Encrypt and ZeroSSL require it).
    pub accept_terms: Option<bool>,
    /// PEM certificates to trust for the directory's TLS besides the system's (step-ca's root).
    pub ca_bundle_pem: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct RequestAcmeCertificateInput {
    pub account_id: ID,
    pub domains: Vec<String>,
    pub challenge: Option<AcmeChallengeValue>,
    pub key_algorithm: Option<certificates::CertificateKeyAlgorithmValue>,
    /// Needed for DNS01.
    pub dns_provider_id: Option<ID>,
    /// The certificate's name in Unity (default: the first domain).
    pub name: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct Rfc2136Input {
    /// host:port of the primary server.
    pub server: String,
    pub zone: String,
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<TsigAlgorithmValue>,
    /// base64, as tsig-keygen, keymgr or the server's UI print it.
    pub tsig_secret: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct WebhookInput {
    pub url: String,
    pub bearer_token: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct CreateDnsProviderInput {
    pub name: String,
    /// Exactly one of `rfc2136` and `webhook`.
    pub rfc2136: Option<Rfc2136Input>,
    pub webhook: Option<WebhookInput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum AcmeAccountStatus {
    Pending,
    Registered,
    Failed,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AcmeAccount {
    pub id: ID,
    pub name: String,
    pub directory_url: String,
    pub email: Option<String>,
    pub eab_kid: Option<String>,
    pub trusts_ca_bundle: bool,
    pub status: AcmeAccountStatus,
    /// The account's URL at the directory.
    pub account_url: Option<String>,
    /// Why the registration failed, in the directory's words.
    pub error: Option<String>,
    pub problem_type: Option<String>,
    pub created_at: DateTime<Utc>,
    pub registered_at: Option<DateTime<Utc>>,
}

impl From<AcmeAccountRow> for AcmeAccount {
    fn from(r: AcmeAccountRow) -> AcmeAccount {
        AcmeAccount {
            id: ID::new(r.account_id.to_string()),
            name: r.name,
            directory_url: r.directory_url,
            email: r.email,
            eab_kid: r.eab_kid,
            trusts_ca_bundle: r.has_ca_bundle,
            status: match r.status.as_str() {
                "REGISTERED" => AcmeAccountStatus::Registered,
                "FAILED" => AcmeAccountStatus::Failed,
                _ => AcmeAccountStatus::Pending,
            },
            account_url: r.account_url,
            error: r.error,
            problem_type: r.problem_type,
            created_at: r.created_at,
            registered_at: r.registered_at,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum AcmeOrderStatus {
    Pending,
    Valid,
    Invalid,
}

pub(super) fn order_status(text: &str) -> AcmeOrderStatus {
    match text {
        "VALID" => AcmeOrderStatus::Valid,
        "INVALID" => AcmeOrderStatus::Invalid,
        _ => AcmeOrderStatus::Pending,
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AcmeAuthorization {
    pub domain: String,
    pub status: AcmeOrderStatus,
    pub token: Option<String>,
    /// DNS-01: the TXT record's name.
    pub record: Option<String>,
    /// Why validation failed, in the directory's words.
    pub error: Option<String>,
    pub problem_type: Option<String>,
}

impl From<AuthorizationRow> for AcmeAuthorization {
    fn from(r: AuthorizationRow) -> AcmeAuthorization {
        AcmeAuthorization {
            domain: r.domain,
            status: order_status(&r.status),
            token: r.token,
            record: r.record,
            error: r.error,
            problem_type: r.problem_type,
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AcmeOrder {
    pub id: ID,
    pub account_id: ID,
    pub name: String,
    pub domains: Vec<String>,
    pub challenge: String,
    pub key_algorithm: String,
    pub status: AcmeOrderStatus,
    pub order_url: Option<String>,
    pub error: Option<String>,
    pub problem_type: Option<String>,
    pub authorizations: Vec<AcmeAuthorization>,
    /// The certificate renewed by this order, if it is a renewal.
    pub renewal_of: Option<ID>,
    pub certificate: Option<certificates::Certificate>,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct DnsProvider {
    pub id: ID,
    pub name: String,
    /// RFC2136 or WEBHOOK.
    pub kind: String,
    pub server: Option<String>,
    pub zone: Option<String>,
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub url: Option<String>,
    /// Whether a TSIG secret or bearer token is kept (sealed; never shown).
    pub has_secret: bool,
    pub created_at: DateTime<Utc>,
}

impl From<DnsProviderRow> for DnsProvider {
    fn from(r: DnsProviderRow) -> DnsProvider {
        DnsProvider {
            id: ID::new(r.provider_id.to_string()),
            name: r.name,
            kind: r.kind,
            server: r.server,
            zone: r.zone,
            tsig_key_name: r.tsig_key_name,
            tsig_algorithm: r.tsig_algorithm,
            url: r.url,
            has_secret: r.has_secret,
            created_at: r.created_at,
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AcmeOrderEdge {
    pub cursor: String,
    pub node: AcmeOrder,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AcmeOrderConnection {
    pub edges: Vec<AcmeOrderEdge>,
    pub page_info: PageInfo,
}
