//! SSH key material: generating, parsing (OpenSSH and PEM, encrypted or not), fingerprints and
//! certificates. Built on russh's copy of the ssh-key crate so the same key types go straight to
//! the SSH client in unity-collectors.

use chrono::{DateTime, Utc};
use russh::keys::{
    decode_secret_key,
    ssh_key::{
        self,
        certificate::{Builder, CertType as SshCertType},
        private::{KeypairData, RsaKeypair},
        public::KeyData,
        Algorithm, EcdsaCurve, HashAlg, LineEnding,
    },
    Certificate, PrivateKey, PublicKey,
};
use unity_domain::credentials::{CertType, CertificateRequest, KeyAlgorithm, PublicKeyInfo, MIN_RSA_BITS, RSA_BITS};
use zeroize::Zeroizing;

/// Longest key text accepted (a 16384-bit RSA key in PEM is about 13 KB).
pub const MAX_KEY_TEXT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is {0} bytes long; keys are at most {MAX_KEY_TEXT} bytes")]
    TooLarge(usize),
    #[error("the private key is encrypted: give its passphrase")]
    NeedsPassphrase,
    #[error("the passphrase does not open this private key")]
    WrongPassphrase,
    #[error("not a private key in OpenSSH or PEM (PKCS#1, PKCS#8, SEC1) format: {0}")]
    MalformedPrivate(String),
    #[error("not an OpenSSH public key line ('ssh-ed25519 AAAA… comment'): {0}")]
    MalformedPublic(String),
    #[error("{0} keys are not supported (use Ed25519, RSA or ECDSA P-256/384/521)")]
    Unsupported(String),
    #[error("RSA keys need at least {MIN_RSA_BITS} bits; this one has {0}")]
    RsaTooSmall(u32),
    #[error("RSA keys are generated with 2048, 3072 or 4096 bits, not {0}")]
    RsaBits(u32),
    #[error("the public key does not belong to the private key")]
    PairMismatch,
    #[error("signing failed: {0}")]
    Signing(String),
}

fn algorithm_of(key: &KeyData) -> Result<(KeyAlgorithm, u32), KeyError> {
    Ok(match key {
        KeyData::Ed25519(_) => (KeyAlgorithm::Ed25519, 256),
        KeyData::Rsa(rsa) => (KeyAlgorithm::Rsa, rsa.key_size()),
        KeyData::Ecdsa(ecdsa) => match ecdsa.curve() {
            EcdsaCurve::NistP256 => (KeyAlgorithm::EcdsaP256, 256),
            EcdsaCurve::NistP384 => (KeyAlgorithm::EcdsaP384, 384),
            EcdsaCurve::NistP521 => (KeyAlgorithm::EcdsaP521, 521),
        },
        other => return Err(KeyError::Unsupported(other.algorithm().to_string())),
    })
}

/// What everyone may see of a key: algorithm, size, `SHA256:` fingerprint and OpenSSH line.
pub fn public_info(key: &PublicKey) -> Result<PublicKeyInfo, KeyError> {
    let (algorithm, bits) = algorithm_of(key.key_data())?;
    if algorithm == KeyAlgorithm::Rsa && bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall(bits));
    }
    Ok(PublicKeyInfo {
        algorithm,
        bits,
        fingerprint: fingerprint(key),
        public_key: key.to_openssh().map_err(|e| KeyError::MalformedPublic(e.to_string()))?,
    })
}

/// `SHA256:…` without padding, exactly as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A fresh key pair.
pub fn generate(algorithm: KeyAlgorithm, bits: Option<u32>, comment: &str) -> Result<PrivateKey, KeyError> {
    let mut rng = rand::rng();
    let failed = |e: ssh_key::Error| KeyError::Signing(e.to_string());
    let mut key = match algorithm {
        KeyAlgorithm::Rsa => {
            let bits = bits.unwrap_or(4096);
            if !RSA_BITS.contains(&bits) {
                return Err(if bits < MIN_RSA_BITS { KeyError::RsaTooSmall(bits) } else { KeyError::RsaBits(bits) });
            }
            let pair = RsaKeypair::random(&mut rng, bits as usize).map_err(failed)?;
            PrivateKey::new(KeypairData::from(pair), comment).map_err(failed)?
        }
        other => {
            if bits.is_some_and(|b| b != algorithm_bits(other)) {
                return Err(KeyError::Unsupported(format!("{} with {} bits", other.as_str(), bits.unwrap_or(0))));
            }
            let algorithm = match other {
                KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
                KeyAlgorithm::EcdsaP256 => Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
                KeyAlgorithm::EcdsaP384 => Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
                _ => Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
            };
            PrivateKey::random(&mut rng, algorithm).map_err(failed)?
        }
    };
    key.set_comment(comment);
    Ok(key)
}

fn algorithm_bits(algorithm: KeyAlgorithm) -> u32 {
    match algorithm {
        KeyAlgorithm::Ed25519 | KeyAlgorithm::EcdsaP256 => 256,
        KeyAlgorithm::EcdsaP384 => 384,
        KeyAlgorithm::EcdsaP521 => 521,
        KeyAlgorithm::Rsa => 4096,
    }
}

fn check_size(text: &str) -> Result<(), KeyError> {
    if text.len() > MAX_KEY_TEXT {
        return Err(KeyError::TooLarge(text.len()));
    }
    Ok(())
}

/// Reads a private key in OpenSSH or PEM form, opening it with `passphrase` if it is encrypted.
pub fn parse_private(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    check_size(text)?;
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let text = text.trim();
    if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let key = PrivateKey::from_openssh(text).map_err(|e| KeyError::MalformedPrivate(e.to_string()))?;
        if !key.is_encrypted() {
            return Ok(key);
        }
        let passphrase = passphrase.ok_or(KeyError::NeedsPassphrase)?;
        return key.decrypt(passphrase).map_err(|_| KeyError::WrongPassphrase);
    }
    let encrypted = text.contains("ENCRYPTED");
    if encrypted && passphrase.is_none() {
        return Err(KeyError::NeedsPassphrase);
    }
    if !text.starts_with("-----BEGIN ") {
        return Err(KeyError::MalformedPrivate("no '-----BEGIN … PRIVATE KEY-----' line".into()));
    }
    decode_secret_key(text, passphrase).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => KeyError::NeedsPassphrase,
        _ if encrypted => KeyError::WrongPassphrase,
        e => KeyError::MalformedPrivate(e.to_string()),
    })
}

/// Reads one OpenSSH public key line.
pub fn parse_public(line: &str) -> Result<PublicKey, KeyError> {
    check_size(line)?;
    let line = line.trim();
    if line.lines().count() > 1 {
        return Err(KeyError::MalformedPublic("more than one line".into()));
    }
    PublicKey::from_openssh(line).map_err(|e| KeyError::MalformedPublic(e.to_string()))
}

/// The private key as an unencrypted OpenSSH PEM (what the vault seals and a reveal shows).
pub fn to_openssh(key: &PrivateKey) -> Result<Zeroizing<String>, KeyError> {
    key.to_openssh(LineEnding::LF).map_err(|e| KeyError::MalformedPrivate(e.to_string()))
}

/// Whether `public` is the public half of `private`.
pub fn same_key(private: &PrivateKey, public: &PublicKey) -> bool {
    private.public_key().key_data() == public.key_data()
}

fn unix(time: DateTime<Utc>) -> Result<u64, KeyError> {
    u64::try_from(time.timestamp()).map_err(|_| KeyError::Signing("validity times must be after 1970".into()))
}

/// Signs `subject` with the CA key, saying exactly what `request` asks.
pub fn sign_certificate(
    ca: &PrivateKey,
    subject: &PublicKey,
    serial: u64,
    request: &CertificateRequest,
) -> Result<Certificate, KeyError> {
    let failed = |e: ssh_key::Error| KeyError::Signing(e.to_string());
    let mut builder = Builder::new_with_random_nonce(
        &mut rand::rng(),
        subject.key_data().clone(),
        unix(request.valid_after)?,
        unix(request.valid_before)?,
    )
    .map_err(failed)?;
    builder.serial(serial).map_err(failed)?;
    builder
        .cert_type(match request.cert_type {
            CertType::User => SshCertType::User,
            CertType::Host => SshCertType::Host,
        })
        .map_err(failed)?;
    builder.key_id(request.key_id.clone()).map_err(failed)?;
    for principal in &request.principals {
        builder.valid_principal(principal.clone()).map_err(failed)?;
    }
    for extension in &request.extensions {
        builder.extension(extension.clone(), "").map_err(failed)?;
    }
    for option in &request.critical_options {
        builder.critical_option(option.name.clone(), option.value.clone()).map_err(failed)?;
    }
    builder.sign(ca).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_asked_algorithm_and_size() {
        for algorithm in
            [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::EcdsaP521]
        {
            let key = generate(algorithm, None, "test").unwrap();
            let info = public_info(key.public_key()).unwrap();
            assert_eq!(info.algorithm, algorithm);
            assert!(info.fingerprint.starts_with("SHA256:") && info.fingerprint.len() == 50, "{}", info.fingerprint);
            assert!(info.public_key.ends_with(" test"));
            // What the vault keeps reads back as the same key.
            let again = parse_private(&to_openssh(&key).unwrap(), None).unwrap();
            assert!(same_key(&again, key.public_key()));
        }
        assert_eq!(generate(KeyAlgorithm::Rsa, Some(1024), "").unwrap_err(), KeyError::RsaTooSmall(1024));
        assert_eq!(generate(KeyAlgorithm::Rsa, Some(5000), "").unwrap_err(), KeyError::RsaBits(5000));
    }

    #[test]
    fn garbage_and_oversized_keys_are_refused_with_reasons() {
        assert!(matches!(parse_private("hello", None), Err(KeyError::MalformedPrivate(_))));
        assert!(matches!(
            parse_private("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----", None),
            Err(KeyError::MalformedPrivate(_))
        ));
        let huge = "A".repeat(1 << 20);
        assert_eq!(parse_private(&huge, None).unwrap_err(), KeyError::TooLarge(1 << 20));
        assert!(matches!(parse_public("ssh-ed25519 !!!"), Err(KeyError::MalformedPublic(_))));
    }
}
