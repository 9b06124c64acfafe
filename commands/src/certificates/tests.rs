use rcgen::{CertificateParams, IsCa};

use super::*;

#[test]
fn garbage_is_refused_with_reasons() {
    assert!(matches!(parse_private_key("hello"), Err(X509CommandError::BadInput(_))));
    assert!(matches!(facts_of(b"\x30\x03\x02\x01\x01"), Err(X509CommandError::BadInput(_))));
    assert!(parse_pem_chain("no pem here").unwrap().is_empty());
    assert!(matches!(parse_pem_chain(&"A".repeat(MAX_PEM + 1)), Err(X509CommandError::BadInput(_))));
}

#[test]
fn generated_keys_load_back_from_their_pem_and_match_their_certificates() {
    for algorithm in [X509KeyAlgorithm::EcdsaP256, X509KeyAlgorithm::EcdsaP384, X509KeyAlgorithm::Ed25519] {
        let key = generate_key(algorithm).unwrap();
        let mut params = CertificateParams::new(vec!["a.lab".into()]).unwrap();
        params.is_ca = IsCa::ExplicitNoCa;
        let cert = params.self_signed(&key).unwrap();
        let again = parse_private_key(&key.serialize_pem()).unwrap();
        assert!(key_matches(&again, cert.der()), "{algorithm:?}");
        let other = generate_key(algorithm).unwrap();
        assert!(!key_matches(&other, cert.der()));
        let facts = facts_of(cert.der()).unwrap();
        assert_eq!(facts.dns_names, vec!["a.lab".to_string()]);
        assert_eq!(parse_pem_chain(&pem_of(cert.der())).unwrap(), vec![cert.der().to_vec()]);
    }
}
