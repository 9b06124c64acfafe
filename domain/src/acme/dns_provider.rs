use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{certificates::check_dns_name, credentials::check_name, decider::Decider, SecretRef};

/// TSIG algorithms for RFC 2136 updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsProviderConfig {
    /// RFC 2136 dynamic updates (BIND, Knot, PowerDNS, Technitium), TSIG-signed if a key is given.
    Rfc2136 {
        /// host:port of the primary server.
        server: String,
        zone: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tsig_key_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tsig_algorithm: Option<TsigAlgorithm>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tsig_secret: Option<SecretRef>,
    },
    /// An HTTP endpoint that publishes and removes TXT records on Unity's behalf.
    Webhook {
        url: String,
        /// Sent as `Authorization: Bearer …` if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bearer_token: Option<SecretRef>,
    },
}

impl DnsProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DnsProviderConfig::Rfc2136 { .. } => "RFC2136",
            DnsProviderConfig::Webhook { .. } => "WEBHOOK",
        }
    }

    /// The secrets it holds, to shred when it is deleted.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        match self {
            DnsProviderConfig::Rfc2136 { tsig_secret, .. } => tsig_secret.iter().collect(),
            DnsProviderConfig::Webhook { bearer_token, .. } => bearer_token.iter().collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum DnsProviderEvent {
    DnsProviderCreated { provider_id: Uuid, name: String, config: DnsProviderConfig },
    DnsProviderDeleted {},
}

crate::domain_event!(DnsProviderEvent, "dns_provider", [DnsProviderCreated, DnsProviderDeleted]);

#[derive(Clone, Debug, PartialEq)]
pub enum DnsProviderCommand {
    Create { provider_id: Uuid, name: String, config: DnsProviderConfig },
    Delete,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum DnsProviderState {
    #[default]
    Absent,
    Active {
        name: String,
        config: DnsProviderConfig,
    },
    Deleted,
}

fn check_host_port(server: &str) -> Result<(), AcmeError> {
    let ok = server.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && !host.contains(char::is_whitespace)
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("server must be host:port, not '{}'", server.chars().take(80).collect::<String>())))
    }
}

pub struct DnsProvider;

impl Decider for DnsProvider {
    type Command = DnsProviderCommand;
    type Event = DnsProviderEvent;
    type State = DnsProviderState;
    type Error = AcmeError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        match (command, state) {
            (DnsProviderCommand::Create { provider_id, name, config }, DnsProviderState::Absent) => {
                check_name("a DNS provider", name).map_err(|e| invalid(e.to_string()))?;
                match config {
                    DnsProviderConfig::Rfc2136 { server, zone, tsig_key_name, tsig_algorithm, tsig_secret } => {
                        check_host_port(server)?;
                        check_dns_name(zone.trim_end_matches('.')).map_err(|e| invalid(e.to_string()))?;
                        let parts = [tsig_key_name.is_some(), tsig_algorithm.is_some(), tsig_secret.is_some()];
                        if parts.iter().any(|p| *p) && !parts.iter().all(|p| *p) {
                            return Err(invalid("a TSIG key needs its name, algorithm and secret"));
                        }
                        if let Some(key) = tsig_key_name {
                            check_dns_name(key.trim_end_matches('.'))
                                .map_err(|_| invalid(format!("'{key}' is not a TSIG key name")))?;
                        }
                    }
                    DnsProviderConfig::Webhook { url, .. } => {
                        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
                            return Err(invalid("the webhook url must be an http:// or https:// URL"));
                        }
                    }
                }
                Ok(vec![DnsProviderEvent::DnsProviderCreated {
                    provider_id: *provider_id,
                    name: name.trim().to_owned(),
                    config: config.clone(),
                }])
            }
            (DnsProviderCommand::Create { .. }, _) => Err(AcmeError::Exists),
            (DnsProviderCommand::Delete, DnsProviderState::Active { .. }) => {
                Ok(vec![DnsProviderEvent::DnsProviderDeleted {}])
            }
            (DnsProviderCommand::Delete, DnsProviderState::Deleted) => Ok(vec![]),
            (DnsProviderCommand::Delete, DnsProviderState::Absent) => Err(AcmeError::DnsProviderNotFound),
        }
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        match event {
            DnsProviderEvent::DnsProviderCreated { name, config, .. } => {
                DnsProviderState::Active { name: name.clone(), config: config.clone() }
            }
            DnsProviderEvent::DnsProviderDeleted {} => match state {
                DnsProviderState::Absent => DnsProviderState::Absent,
                _ => DnsProviderState::Deleted,
            },
        }
    }
}
