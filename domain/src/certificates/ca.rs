use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{credentials::check_name, decider::Decider, SecretRef};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum X509CaEvent {
    CertificateAuthorityCreated {
        ca_id: Uuid,
        name: String,
        key_algorithm: X509KeyAlgorithm,
        path_length: Option<u8>,
        parent_id: Option<Uuid>,
        #[serde(flatten)]
        facts: CertificateFacts,
        certificate_pem: String,
        /// The parents' certificates, nearest first (empty for a root).
        chain_pem: String,
        private_key: SecretRef,
    },
}

crate::domain_event!(X509CaEvent, "x509_ca", [CertificateAuthorityCreated]);

#[derive(Clone, Debug, PartialEq)]
pub struct CreateCa {
    pub ca_id: Uuid,
    pub name: String,
    pub key_algorithm: X509KeyAlgorithm,
    pub path_length: Option<u8>,
    pub parent_id: Option<Uuid>,
    pub facts: CertificateFacts,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub private_key: SecretRef,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum X509CaState {
    #[default]
    Absent,
    Active(Box<CaData>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CaData {
    pub ca_id: Uuid,
    pub name: String,
    pub key_algorithm: X509KeyAlgorithm,
    pub path_length: Option<u8>,
    pub facts: CertificateFacts,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub private_key: SecretRef,
}

pub struct X509Ca;

impl Decider for X509Ca {
    type Command = CreateCa;
    type Event = X509CaEvent;
    type State = X509CaState;
    type Error = X509Error;

    fn decide(c: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        if *state != X509CaState::Absent {
            return Err(X509Error::CaExists);
        }
        check_name("a certificate authority", &c.name).map_err(|e| X509Error::Invalid(e.to_string()))?;
        if !c.facts.is_ca {
            return Err(X509Error::Invalid("a CA's certificate must say it is a CA".into()));
        }
        Ok(vec![X509CaEvent::CertificateAuthorityCreated {
            ca_id: c.ca_id,
            name: c.name.trim().to_owned(),
            key_algorithm: c.key_algorithm,
            path_length: c.path_length,
            parent_id: c.parent_id,
            facts: c.facts.clone(),
            certificate_pem: c.certificate_pem.clone(),
            chain_pem: c.chain_pem.clone(),
            private_key: c.private_key.clone(),
        }])
    }

    fn evolve(_: Self::State, event: &Self::Event) -> Self::State {
        let X509CaEvent::CertificateAuthorityCreated {
            ca_id,
            name,
            key_algorithm,
            path_length,
            facts,
            certificate_pem,
            chain_pem,
            private_key,
            ..
        } = event;
        X509CaState::Active(Box::new(CaData {
            ca_id: *ca_id,
            name: name.clone(),
            key_algorithm: *key_algorithm,
            path_length: *path_length,
            facts: facts.clone(),
            certificate_pem: certificate_pem.clone(),
            chain_pem: chain_pem.clone(),
            private_key: private_key.clone(),
        }))
    }
}
