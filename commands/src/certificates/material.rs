use super::*;
use chrono::{DateTime, TimeZone, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, KeyPair, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PKCS_ED25519,
};
use ring::rand::{SecureRandom, SystemRandom};
use unity_domain::certificates::{CertificateFacts, X509KeyAlgorithm};
use x509_parser::prelude::{FromDer, GeneralName, Pem, X509Certificate};

pub(crate) fn generate_key(algorithm: X509KeyAlgorithm) -> Result<KeyPair> {
    match algorithm {
        X509KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto),
        X509KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(crypto),
        X509KeyAlgorithm::Ed25519 => KeyPair::generate_for(&PKCS_ED25519).map_err(crypto),
        // ring cannot generate RSA keys: the rsa crate does, and ring signs with them.
        X509KeyAlgorithm::Rsa2048 | X509KeyAlgorithm::Rsa4096 => {
            use rsa::pkcs8::EncodePrivateKey;
            let bits = if algorithm == X509KeyAlgorithm::Rsa2048 { 2048 } else { 4096 };
            let key = rsa::RsaPrivateKey::new(&mut rand::rng(), bits).map_err(crypto)?;
            let der = key.to_pkcs8_der().map_err(crypto)?;
            KeyPair::try_from(der.as_bytes()).map_err(crypto)
        }
    }
}

/// A fresh key and a CSR for `domains` (the subject left empty, as ACME directories ignore it).
pub async fn key_and_csr(domains: &[String], algorithm: X509KeyAlgorithm) -> Result<(KeyPair, Vec<u8>)> {
    if algorithm == X509KeyAlgorithm::Ed25519 {
        return Err(bad("ACME directories do not issue certificates for Ed25519 keys; use an ECDSA or RSA key"));
    }
    let key = tokio::task::spawn_blocking(move || generate_key(algorithm)).await.map_err(crypto)??;
    let mut params = CertificateParams::new(domains.to_vec()).map_err(crypto)?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(crypto)?;
    Ok((key, csr.der().to_vec()))
}

/// 128 random bits, positive.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("system randomness");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte, so the hex form is stable
    SerialNumber::from(bytes.to_vec())
}

pub(crate) fn offset(time: DateTime<Utc>) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(time.timestamp()).map_err(crypto)
}

pub(crate) fn utc(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap_or_default()
}

/// Parses every CERTIFICATE block of a PEM text, in order.
pub fn parse_pem_chain(text: &str) -> Result<Vec<Vec<u8>>> {
    if text.len() > MAX_PEM {
        return Err(bad(format!("the PEM text is {} bytes; at most {MAX_PEM}", text.len())));
    }
    let mut ders = Vec::new();
    for pem in Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|_| {
            bad("not PEM: expected blocks of the form -----BEGIN CERTIFICATE----- (base64) -----END CERTIFICATE-----")
        })?;
        if pem.label == "CERTIFICATE" {
            ders.push(pem.contents);
        }
    }
    Ok(ders)
}

/// The facts of one DER certificate.
pub fn facts_of(der: &[u8]) -> Result<CertificateFacts> {
    // The parser's own words (nom's) mean nothing to the caller: say what was expected.
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| {
        bad("a CERTIFICATE block does not hold an X.509 certificate (expected its DER encoding in base64 between the BEGIN and END lines)")
    })?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    ip_addresses.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    let common_name = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).map(str::to_owned);
    Ok(CertificateFacts {
        subject: cert.subject().to_string(),
        common_name,
        issuer: cert.issuer().to_string(),
        // Whole bytes, as openssl prints serials.
        serial: {
            let hex = cert.serial.to_str_radix(16);
            if hex.len() % 2 == 1 {
                format!("0{hex}")
            } else {
                hex
            }
        },
        not_before: utc(cert.validity().not_before.timestamp()),
        not_after: utc(cert.validity().not_after.timestamp()),
        dns_names,
        ip_addresses,
        fingerprint: hex::encode(ring::digest::digest(&ring::digest::SHA256, der)),
        is_ca: cert.is_ca(),
    })
}

// PKCS#1 and SEC1 keys wrapped as PKCS#8, which is all ring reads.
pub(crate) fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x100 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}
pub(crate) fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(body.len()));
    v.extend_from_slice(body);
    v
}
pub(crate) fn wrap_pkcs8(algorithm: &[u8], inner: &[u8]) -> Vec<u8> {
    tlv(0x30, &[&[0x02, 0x01, 0x00][..], &tlv(0x30, algorithm), &tlv(0x04, inner)].concat())
}
pub(crate) const RSA_ENCRYPTION: &[u8] =
    &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
pub(crate) const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A private key in PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn parse_private_key(text: &str) -> Result<KeyPair> {
    if text.len() > MAX_PEM {
        return Err(bad(format!("the private key is {} bytes; at most {MAX_PEM}", text.len())));
    }
    let unreadable = || bad("privateKeyPem is not a private key in PEM (PKCS#8, PKCS#1 or SEC1; unencrypted)");
    let pem = Pem::iter_from_buffer(text.as_bytes())
        .filter_map(|p| p.ok())
        .find(|p| p.label.ends_with("PRIVATE KEY"))
        .ok_or_else(unreadable)?;
    let key = match pem.label.as_str() {
        "PRIVATE KEY" => KeyPair::try_from(pem.contents.as_slice()).ok(),
        "RSA PRIVATE KEY" => KeyPair::try_from(wrap_pkcs8(RSA_ENCRYPTION, &pem.contents)).ok(),
        "EC PRIVATE KEY" => [P256, P384]
            .iter()
            .find_map(|curve| KeyPair::try_from(wrap_pkcs8(&[EC_PUBLIC_KEY, curve].concat(), &pem.contents)).ok()),
        "ENCRYPTED PRIVATE KEY" => return Err(bad("the private key is encrypted; give it unencrypted")),
        _ => None,
    };
    key.ok_or_else(unreadable)
}

pub(crate) fn key_matches(key: &KeyPair, der: &[u8]) -> bool {
    X509Certificate::from_der(der)
        .map(|(_, cert)| key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref())
        .unwrap_or(false)
}

/// A DER certificate as a PEM block.
pub fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
