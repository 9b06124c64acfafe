//! The mutation root: the access table for writes. Each field states the role it needs, then
//! calls its domain's module (which calls `crate::orchestration` for the use cases that act on
//! servers).

use juniper::{graphql_object, ID};
use unity_domain::identity::Role;

use super::{acme, certificates, credentials, identity, monitoring, servers, Context};
use crate::errors::ApiError;

pub struct Mutation;

#[graphql_object(context = Context)]
impl Mutation {
    /// Signs in with a password. Failed attempts are recorded, and limited per username and per
    /// client address (see the README).
    async fn login(
        ctx: &Context,
        #[graphql(description = "The user's name.")] username: String,
        #[graphql(description = "The user's password.")] password: String,
    ) -> Result<identity::Session, ApiError> {
        // No role: this is how a principal is made.
        identity::login(ctx, username, password).await
    }

    /// Ends the session whose token this request carries.
    async fn logout(ctx: &Context) -> Result<bool, ApiError> {
        identity::logout(ctx, ctx.require(Role::Viewer)?).await
    }

    /// Creates a user with a password and a role (ADMIN).
    async fn create_user(
        ctx: &Context,
        #[graphql(description = "The new user's username, password and role.")] input: identity::CreateUserInput,
    ) -> Result<identity::User, ApiError> {
        identity::create_user(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// Gives a user another role; their sessions and API keys follow at once, open WebSockets included (ADMIN).
    async fn change_user_role(
        ctx: &Context,
        #[graphql(description = "The user and their new role.")] input: identity::ChangeUserRoleInput,
    ) -> Result<identity::User, ApiError> {
        identity::change_user_role(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// Disables a user: they can no longer sign in, and their sessions and API keys stop working.
    async fn disable_user(
        ctx: &Context,
        #[graphql(description = "The user's id.")] user_id: ID,
    ) -> Result<identity::User, ApiError> {
        identity::disable_user(ctx, ctx.require(Role::Admin)?, user_id).await
    }

    /// Changes the signed-in user's password. Every session of the user ends, this one included.
    async fn change_password(
        ctx: &Context,
        #[graphql(description = "The current password and the new one.")] input: identity::ChangePasswordInput,
    ) -> Result<bool, ApiError> {
        identity::change_password(ctx, ctx.require(Role::Viewer)?, input).await
    }

    /// Creates an API key for the signed-in user, with at most the caller's role. The secret is
    /// in this response only.
    async fn create_api_key(
        ctx: &Context,
        #[graphql(description = "The key's name, role (never above the owner's) and optional expiry.")]
        input: identity::CreateApiKeyInput,
    ) -> Result<identity::ApiKeyWithSecret, ApiError> {
        identity::create_api_key(ctx, ctx.require(Role::Viewer)?, input).await
    }

    /// Generates an SSH key pair; the private half is sealed in the vault before anything is recorded.
    async fn generate_ssh_key(
        ctx: &Context,
        #[graphql(description = "The key's name, algorithm, comment and tags.")]
        input: credentials::GenerateSshKeyInput,
    ) -> Result<credentials::SshKey, ApiError> {
        credentials::generate_ssh_key(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Imports an SSH key (OpenSSH or PEM, encrypted or not), or a public key alone.
    async fn import_ssh_key(
        ctx: &Context,
        #[graphql(
            description = "The key (private in OpenSSH or PEM form, or public alone), its passphrase and its name."
        )]
        input: credentials::ImportSshKeyInput,
    ) -> Result<credentials::SshKey, ApiError> {
        credentials::import_ssh_key(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// The private key in OpenSSH form. Every reveal is recorded with who asked.
    async fn reveal_ssh_private_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<String, ApiError> {
        credentials::reveal_ssh_private_key(ctx, ctx.require(Role::Admin)?, id).await
    }

    /// Replaces the key on every server where it is installed: the new key goes in, then the old
    /// one comes out, server by server. A server that cannot be reached keeps the old key (and
    /// says so in `operations`); a server that logs in with the old key switches to the new one.
    async fn rotate_ssh_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<credentials::KeyRotation, ApiError> {
        credentials::rotate_ssh_key(ctx, ctx.require(Role::Operator)?, id).await
    }

    /// Removes the key from every server where it is installed, then crypto-shreds its private
    /// half. If a removal fails, the key is kept (`deleted: false`) and nothing is shredded.
    async fn delete_ssh_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<credentials::KeyDeletion, ApiError> {
        credentials::delete_ssh_key(ctx, ctx.require(Role::Operator)?, id).await
    }

    /// Installs the key in the authorized_keys of `user` (default: each server's login user).
    async fn distribute_ssh_key(
        ctx: &Context,
        #[graphql(description = "The key and the servers to install it on.")] input: credentials::DistributeSshKeyInput,
    ) -> Result<Vec<servers::ServerOperation>, ApiError> {
        credentials::distribute_ssh_key(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Removes the key from the given servers (every file Unity put it in; the login user's
    /// authorized_keys if Unity has no record of it there).
    async fn remove_ssh_key_from_servers(
        ctx: &Context,
        #[graphql(description = "The key and the servers to remove it from.")]
        input: credentials::RemoveSshKeyFromServersInput,
    ) -> Result<Vec<servers::ServerOperation>, ApiError> {
        credentials::remove_ssh_key_from_servers(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Adds a server to the inventory: its address, how Unity logs in, and optionally its host key.
    async fn register_server(
        ctx: &Context,
        #[graphql(
            description = "The server's name, address, port, login user and authentication, and optionally its host key."
        )]
        input: servers::RegisterServerInput,
    ) -> Result<servers::Server, ApiError> {
        servers::register_server(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Changes a server's name, address, login, tags or authorized_keys path.
    async fn update_server(
        ctx: &Context,
        #[graphql(description = "The server and the settings to change.")] input: servers::UpdateServerInput,
    ) -> Result<servers::Server, ApiError> {
        servers::update_server(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Takes the server out of the inventory (keys Unity installed there stay on the machine).
    async fn remove_server(
        ctx: &Context,
        #[graphql(description = "The server's id.")] id: ID,
    ) -> Result<servers::Server, ApiError> {
        servers::remove_server(ctx, ctx.require(Role::Operator)?, id).await
    }

    /// Trusts a new host key deliberately (after a reinstall, say), ending a MISMATCH.
    async fn accept_server_host_key(
        ctx: &Context,
        #[graphql(description = "The server and the fingerprint of the host key to accept.")]
        input: servers::AcceptServerHostKeyInput,
    ) -> Result<servers::Server, ApiError> {
        servers::accept_server_host_key(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// Connects over SSH and reports the OS, kernel, hostname and one command's round trip.
    async fn test_server_connection(
        ctx: &Context,
        #[graphql(description = "The server's id.")] server_id: ID,
    ) -> Result<servers::ConnectionTest, ApiError> {
        servers::test_server_connection(ctx, ctx.require(Role::Operator)?, server_id).await
    }

    /// Turns monitoring of a server on or off and sets its cadences (poll interval, SMART,
    /// database probes). Unset fields keep their values.
    async fn configure_monitoring(
        ctx: &Context,
        #[graphql(description = "The server, whether it is watched, and its cadences.")]
        input: monitoring::ConfigureMonitoringInput,
    ) -> Result<monitoring::ServerMonitoring, ApiError> {
        monitoring::configure_monitoring(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Makes a check: a Nagios-compatible plugin (any command) run over SSH on a server or on
    /// every server with a tag. ADMIN: it runs commands of your choosing on servers.
    async fn create_check(
        ctx: &Context,
        #[graphql(description = "What to run, where and how often.")] input: monitoring::CreateCheckInput,
    ) -> Result<monitoring::Check, ApiError> {
        monitoring::create_check(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// Removes a check; it runs no more, and its results leave the servers' monitoring (the
    /// runs stay in the log).
    async fn delete_check(ctx: &Context, #[graphql(description = "The check's id.")] id: ID) -> Result<bool, ApiError> {
        monitoring::delete_check(ctx, ctx.require(Role::Admin)?, id).await
    }

    /// Polls a monitored server now (through the collectors) and returns the sample.
    async fn collect_now(
        ctx: &Context,
        #[graphql(description = "The server's id.")] server_id: ID,
    ) -> Result<monitoring::Sample, ApiError> {
        monitoring::collect_now(ctx, ctx.require(Role::Operator)?, server_id).await
    }

    /// Ignores a disk's SMART attribute, or accepts its current value (judged again if it grows).
    async fn override_smart_attribute(
        ctx: &Context,
        #[graphql(description = "The disk (`storageDevices.id`), the attribute, and what to do with it.")]
        input: monitoring::OverrideSmartAttributeInput,
    ) -> Result<monitoring::StorageDevice, ApiError> {
        monitoring::override_smart_attribute(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Reads the server's managed blocks back and records any hand edits as drift.
    async fn check_server_keys(
        ctx: &Context,
        #[graphql(description = "The server's id.")] server_id: ID,
    ) -> Result<servers::ServerOperation, ApiError> {
        servers::check_server_keys(ctx, ctx.require(Role::Operator)?, server_id).await
    }

    /// Stores a password, private key or token for logging in to servers; the secret is sealed in the vault.
    async fn create_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's name, kind and secret.")]
        input: credentials::CreateServerCredentialInput,
    ) -> Result<credentials::ServerCredential, ApiError> {
        credentials::create_server_credential(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Replaces a server credential's name or secret (the old secret is shredded).
    async fn update_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential, and its new name or secret.")]
        input: credentials::UpdateServerCredentialInput,
    ) -> Result<credentials::ServerCredential, ApiError> {
        credentials::update_server_credential(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Deletes the credential and shreds its secret; refused while a server logs in with it.
    async fn delete_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's id.")] id: ID,
    ) -> Result<bool, ApiError> {
        credentials::delete_server_credential(ctx, ctx.require(Role::Operator)?, id).await
    }

    /// The credential's secret. Every reveal is recorded with who asked.
    async fn reveal_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's id.")] id: ID,
    ) -> Result<String, ApiError> {
        credentials::reveal_server_credential(ctx, ctx.require(Role::Admin)?, id).await
    }

    /// Creates an SSH certificate authority; its private key is sealed in the vault (ADMIN).
    async fn create_ssh_certificate_authority(
        ctx: &Context,
        #[graphql(description = "The authority's name and key algorithm.")]
        input: credentials::CreateSshCertificateAuthorityInput,
    ) -> Result<credentials::SshCertificateAuthority, ApiError> {
        credentials::create_ssh_certificate_authority(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// Signs an SSH certificate saying exactly what is asked; recorded with its serial.
    async fn sign_ssh_certificate(
        ctx: &Context,
        #[graphql(
            description = "The authority, the public key to certify, and the certificate's type, key id, principals, validity and options."
        )]
        input: credentials::SignSshCertificateInput,
    ) -> Result<credentials::SignedSshCertificate, ApiError> {
        credentials::sign_ssh_certificate(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Writes the CA's key into a managed TrustedUserCAKeys file on each server (point sshd's
    /// `TrustedUserCAKeys` at it).
    async fn install_ssh_ca_on_servers(
        ctx: &Context,
        #[graphql(description = "The authority, the servers, and the file sshd's TrustedUserCAKeys names.")]
        input: credentials::InstallSshCaOnServersInput,
    ) -> Result<Vec<servers::ServerOperation>, ApiError> {
        credentials::install_ssh_ca_on_servers(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// A root CA, or with `parentId` an intermediate signed by an existing CA.
    async fn create_certificate_authority(
        ctx: &Context,
        #[graphql(
            description = "The authority's names, key algorithm, validity, path length, and its parent for an intermediate."
        )]
        input: certificates::CreateCertificateAuthorityInput,
    ) -> Result<certificates::CertificateAuthority, ApiError> {
        certificates::create_certificate_authority(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// A certificate and key from an internal CA.
    async fn issue_certificate(
        ctx: &Context,
        #[graphql(description = "The issuing authority, the certificate's names, usage, validity and key algorithm.")]
        input: certificates::IssueCertificateInput,
    ) -> Result<certificates::Certificate, ApiError> {
        certificates::issue_certificate(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Keeps a certificate obtained elsewhere (its key too, if given, sealed in the vault).
    async fn import_certificate(
        ctx: &Context,
        #[graphql(description = "The certificate (or chain) and its unencrypted private key, in PEM.")]
        input: certificates::ImportCertificateInput,
    ) -> Result<certificates::Certificate, ApiError> {
        certificates::import_certificate(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Revokes a certificate; an internal CA's CRL lists it from then on.
    async fn revoke_certificate(
        ctx: &Context,
        #[graphql(description = "The certificate and the reason.")] input: certificates::RevokeCertificateInput,
    ) -> Result<certificates::Certificate, ApiError> {
        certificates::revoke_certificate(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Writes the certificate (and key, chain) to a server over SSH, atomically, then runs the
    /// reload command; redeployed after each renewal.
    async fn deploy_certificate(
        ctx: &Context,
        #[graphql(description = "The certificate, the server, the paths to write, owner, mode and reload command.")]
        input: certificates::DeployCertificateInput,
    ) -> Result<servers::ServerOperation, ApiError> {
        certificates::deploy_certificate(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// When Unity renews this certificate (internal certificates are renewed automatically).
    async fn configure_certificate_renewal(
        ctx: &Context,
        #[graphql(description = "The certificate and how many days before expiry to renew it.")]
        input: certificates::ConfigureCertificateRenewalInput,
    ) -> Result<certificates::Certificate, ApiError> {
        certificates::configure_certificate_renewal(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// Registers an account at an ACME directory (a preset or any URL, with EAB and a CA bundle
    /// if needed). Waits for the directory's answer: REGISTERED, or FAILED with its error.
    async fn register_acme_account(
        ctx: &Context,
        #[graphql(
            description = "The directory (a preset or a URL), contact, terms, and EAB credentials where the directory needs them."
        )]
        input: acme::RegisterAcmeAccountInput,
    ) -> Result<acme::AcmeAccount, ApiError> {
        acme::register_acme_account(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// Orders a certificate from an ACME account's directory, answering HTTP-01 on this API's
    /// /.well-known/acme-challenge/ or DNS-01 through a DNS provider. Waits for the outcome (up
    /// to UNITY_ACME_WAIT_SECS); a PENDING order goes on and can be followed with acmeOrder.
    async fn request_acme_certificate(
        ctx: &Context,
        #[graphql(description = "The account, the names, the challenge type and DNS provider, and the key algorithm.")]
        input: acme::RequestAcmeCertificateInput,
    ) -> Result<acme::AcmeOrder, ApiError> {
        acme::request_acme_certificate(ctx, ctx.require(Role::Operator)?, input).await
    }

    /// A DNS provider for DNS-01: RFC 2136 dynamic updates (TSIG-signed) or a webhook.
    async fn create_dns_provider(
        ctx: &Context,
        #[graphql(description = "The provider's name and its RFC 2136 server or webhook.")]
        input: acme::CreateDnsProviderInput,
    ) -> Result<acme::DnsProvider, ApiError> {
        acme::create_dns_provider(ctx, ctx.require(Role::Admin)?, input).await
    }

    /// Deletes a DNS provider and shreds its secret.
    async fn delete_dns_provider(
        ctx: &Context,
        #[graphql(description = "The DNS provider's id.")] id: ID,
    ) -> Result<bool, ApiError> {
        acme::delete_dns_provider(ctx, ctx.require(Role::Admin)?, id).await
    }

    /// A certificate's private key in PEM (ADMIN; every reveal is recorded).
    async fn reveal_certificate_private_key(
        ctx: &Context,
        #[graphql(description = "The certificate's id.")] id: ID,
    ) -> Result<String, ApiError> {
        certificates::reveal_certificate_private_key(ctx, ctx.require(Role::Admin)?, id).await
    }

    /// Revokes an API key: one's own, or anyone's for an admin.
    async fn revoke_api_key(
        ctx: &Context,
        #[graphql(description = "The API key's id.")] id: ID,
    ) -> Result<identity::ApiKey, ApiError> {
        identity::revoke_api_key(ctx, ctx.require(Role::Viewer)?, id).await
    }
}
