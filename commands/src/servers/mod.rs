//! Server commands: the inventory, and the requests that the SSH reactor (unity-collectors)
//! carries out on servers, with their outcomes.

use unity_domain::{
    credentials::{CredentialError, CredentialKind, ServerCredentialState},
    servers::{Outcome, Server, ServerCommand, ServerEvent, ServerRequest, ServerSpec, ServerState},
    EventMetadata,
};
use uuid::Uuid;

use crate::{
    credentials::{Created, CredentialCommands, CredentialsError},
    handler::{execute, load, stream_of},
    store::{Appended, EventStore},
};

type Result<T> = std::result::Result<T, CredentialsError>;

/// Where a request to a server was recorded.
#[derive(Clone, Debug)]
pub struct Requested {
    pub server_id: Uuid,
    pub request_id: Uuid,
    pub appended: Option<Appended>,
}

/// The server commands. A server logs in with a credential, so they stand on the credential commands.
#[derive(Clone)]
pub struct ServerCommands {
    credentials: CredentialCommands,
}

impl ServerCommands {
    pub fn new(credentials: CredentialCommands) -> ServerCommands {
        ServerCommands { credentials }
    }

    fn store(&self) -> &EventStore {
        self.credentials.store()
    }

    pub async fn register_server(
        &self,
        spec: ServerSpec,
        host_key_fingerprint: Option<String>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        self.check_authentication(&spec).await?;
        let server_id = Uuid::now_v7();
        let (_, appended) = execute::<Server>(
            self.store(),
            &stream_of::<ServerEvent>(server_id),
            &ServerCommand::Register { server_id, spec, host_key_fingerprint },
            metadata,
        )
        .await?;
        Ok(Created { id: server_id, appended })
    }

    /// The key or credential a server logs in with must exist and be usable.
    async fn check_authentication(&self, spec: &ServerSpec) -> Result<()> {
        match spec.authentication {
            unity_domain::servers::ServerAuth::SshKey { key_id } => {
                let key = self.credentials.active_key(key_id).await?;
                if key.private_key.is_none() {
                    return Err(CredentialError::NoPrivateKey("log in with").into());
                }
            }
            unity_domain::servers::ServerAuth::Credential { credential_id } => {
                match self.credentials.server_credential(credential_id).await? {
                    ServerCredentialState::Active { kind: CredentialKind::Token, .. } => {
                        return Err(CredentialError::Invalid(
                            "a TOKEN credential cannot log in over SSH; use a PASSWORD or PRIVATE_KEY".into(),
                        )
                        .into())
                    }
                    ServerCredentialState::Active { .. } => {}
                    ServerCredentialState::Absent => return Err(CredentialError::CredentialNotFound.into()),
                    ServerCredentialState::Deleted => return Err(CredentialError::CredentialDeleted.into()),
                }
            }
        }
        Ok(())
    }

    pub async fn server(&self, server_id: Uuid) -> Result<ServerState> {
        Ok(load::<Server>(self.store(), &stream_of::<ServerEvent>(server_id)).await?.0)
    }

    pub async fn update_server(
        &self,
        server_id: Uuid,
        spec: ServerSpec,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        self.check_authentication(&spec).await?;
        self.server_command(server_id, ServerCommand::Update { spec }, metadata).await
    }

    pub async fn server_command(
        &self,
        server_id: Uuid,
        command: ServerCommand,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let (_, appended) =
            execute::<Server>(self.store(), &stream_of::<ServerEvent>(server_id), &command, metadata).await?;
        Ok(appended)
    }

    /// Records a request for the SSH reactor to carry out.
    pub async fn request(
        &self,
        server_id: Uuid,
        request: ServerRequest,
        metadata: &EventMetadata,
    ) -> Result<Requested> {
        let request_id = Uuid::now_v7();
        let appended = self.server_command(server_id, ServerCommand::Request { request_id, request }, metadata).await?;
        Ok(Requested { server_id, request_id, appended })
    }

    /// Records a request's outcome (the reactor's half of the pair).
    pub async fn complete(
        &self,
        server_id: Uuid,
        request_id: Uuid,
        outcome: Outcome,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let command = ServerCommand::Complete { request_id, outcome, follow_up_id: Uuid::now_v7() };
        self.server_command(server_id, command, metadata).await
    }
}
