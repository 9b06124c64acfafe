use super::*;

fn key() -> TsigKey {
    TsigKey {
        name: "Acme-Key.".into(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: b"0123456789abcdef0123456789abcdef".to_vec(),
    }
}

#[test]
fn name_encoding() {
    let expected = b"\x0f_acme-challenge\x04host\x05unity\x04test\x00".to_vec();
    assert_eq!(encode_name("_acme-challenge.host.unity.test").unwrap(), expected);
    assert_eq!(encode_name("_ACME-challenge.Host.unity.test.").unwrap(), expected);
    assert_eq!(encode_name(".").unwrap(), vec![0]);
    assert!(encode_name("").is_err());
    assert!(encode_name("a..b").is_err());
    assert!(encode_name(&format!("{}.test", "a".repeat(63))).is_ok());
    let err = encode_name(&format!("{}.test", "a".repeat(64))).unwrap_err();
    assert!(err.to_string().contains("63"), "{err}");
    // 4 labels of 63 + 4 length bytes + root = 257 > 255
    let long = vec!["a".repeat(63); 4].join(".");
    assert!(encode_name(&long).unwrap_err().to_string().contains("255"));
}

#[test]
fn zone_membership() {
    let zone = encode_name("Unity.Test.").unwrap();
    let inside = |n: &str| in_zone(&encode_name(n).unwrap(), &zone);
    assert!(inside("_acme-challenge.host.unity.test"));
    assert!(inside("_ACME-CHALLENGE.UNITY.TEST."));
    assert!(inside("unity.test"));
    assert!(!inside("evilunity.test"));
    assert!(!inside("x.example.org"));
    assert!(!inside("test"));
    assert!(in_zone(&encode_name("a.b").unwrap(), &encode_name(".").unwrap()));
}

#[tokio::test]
async fn outside_zone_error_message() {
    let c = Rfc2136 {
        server: "127.0.0.1:9".parse().unwrap(),
        zone: "unity.test".into(),
        key: None,
        timeout: Duration::from_secs(1),
    };
    let err = c.add_txt("x.example.org.", "v", 60).await.unwrap_err();
    assert_eq!(err.to_string(), "name x.example.org is not inside zone unity.test");
}

#[test]
fn txt_split_300_bytes() {
    let value = "x".repeat(300);
    let rdata = txt_rdata(&value).unwrap();
    assert_eq!(rdata.len(), 302);
    assert_eq!(rdata[0], 255);
    assert_eq!(rdata[256], 45);
    assert!(rdata[1..256].iter().chain(&rdata[257..]).all(|&b| b == b'x'));
    assert_eq!(txt_rdata("").unwrap(), vec![0]);
    assert_eq!(txt_rdata(&"y".repeat(255)).unwrap().len(), 256);
    assert!(txt_rdata(&"z".repeat(70_000)).is_err());
}

#[test]
fn algorithm_parsing() {
    for s in ["hmac-sha256", "hmac-sha256.", "HMAC-SHA256", "Hmac-Sha256."] {
        assert_eq!(TsigAlgorithm::parse(s), Some(TsigAlgorithm::HmacSha256), "{s}");
    }
    for s in ["hmac-sha512", "hmac-sha512.", "HMAC-SHA512"] {
        assert_eq!(TsigAlgorithm::parse(s), Some(TsigAlgorithm::HmacSha512), "{s}");
    }
    for s in ["hmac-md5", "", "hmac-sha256..", "sha256"] {
        assert_eq!(TsigAlgorithm::parse(s), None, "{s}");
    }
}

#[test]
fn debug_hides_secret() {
    assert!(!format!("{:?}", key()).contains("0123"));
}

/// Builds a server-style signed response to `request`, as knot would.
fn signed_response(request: &[u8], request_mac: &[u8], key: &TsigKey, rcode: u16) -> Vec<u8> {
    // Header + zone section only, as servers answer; update counts zeroed.
    let mut r = Reader { buf: request, pos: HEADER_LEN };
    r.name().unwrap();
    r.take(4).unwrap();
    let mut resp = request[..r.pos].to_vec();
    resp[2] |= 0x80;
    resp[3] = (resp[3] & 0xF0) | rcode as u8;
    resp[6..12].copy_from_slice(&[0; 6]);
    // Sign the response: request MAC prefix, then the same layout as a request.
    let hkey = hmac::Key::new(key.algorithm.ring(), &key.secret);
    let mut prefix = (request_mac.len() as u16).to_be_bytes().to_vec();
    prefix.extend_from_slice(request_mac);
    let now = unix_now();
    let key_name = encode_name(&key.name).unwrap();
    let alg = encode_name(key.algorithm.wire_name()).unwrap();
    let mut vars = key_name.clone();
    vars.extend_from_slice(&CLASS_ANY.to_be_bytes());
    vars.extend_from_slice(&0u32.to_be_bytes());
    vars.extend_from_slice(&alg);
    put_time48(&mut vars, now);
    vars.extend_from_slice(&FUDGE.to_be_bytes());
    vars.extend_from_slice(&[0, 0, 0, 0]);
    let mut ctx = hmac::Context::with_key(&hkey);
    ctx.update(&prefix);
    ctx.update(&resp);
    ctx.update(&vars);
    let mac = ctx.sign().as_ref().to_vec();
    let mut rdata = alg.clone();
    put_time48(&mut rdata, now);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&request[0..2]);
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    resp.extend_from_slice(&key_name);
    resp.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    resp.extend_from_slice(&CLASS_ANY.to_be_bytes());
    resp.extend_from_slice(&0u32.to_be_bytes());
    resp.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    resp.extend_from_slice(&rdata);
    resp[10..12].copy_from_slice(&1u16.to_be_bytes());
    resp
}

fn client() -> Rfc2136 {
    Rfc2136 {
        server: "127.0.0.1:53".parse().unwrap(),
        zone: "unity.test".into(),
        key: Some(key()),
        timeout: Duration::from_secs(1),
    }
}

fn request() -> (Vec<u8>, Vec<u8>) {
    let zone = encode_name("unity.test").unwrap();
    let name = encode_name("_acme-challenge.unity.test").unwrap();
    let msg = build_update(0x1234, &zone, &name, CLASS_IN, 60, &txt_rdata("v").unwrap());
    sign_request(msg, &key(), unix_now()).unwrap()
}

#[test]
fn response_mac_roundtrip() {
    let (req, mac) = request();
    let c = client();
    let resp = signed_response(&req, &mac, &key(), 0);
    c.check_response(&resp, 0x1234, Some(&mac), "n").unwrap();

    // Wrong request MAC (i.e. response to some other request) must not verify.
    let err = c.check_response(&resp, 0x1234, Some(&[0u8; 32]), "n").unwrap_err();
    assert!(matches!(err, DnsError::BadResponseSignature { .. }), "{err}");

    // Any flipped bit in the body must not verify.
    let mut tampered = resp.clone();
    tampered[3] ^= 0x10; // a header flag bit (AD)
    let err = c.check_response(&tampered, 0x1234, Some(&mac), "n").unwrap_err();
    assert!(err.to_string().contains("failed TSIG verification"), "{err}");

    // ID mismatch.
    let err = c.check_response(&resp, 0x9999, Some(&mac), "n").unwrap_err();
    assert!(err.to_string().contains("ID"), "{err}");
}

#[test]
fn rcode_is_reported_by_name() {
    let (req, mac) = request();
    let resp = signed_response(&req, &mac, &key(), 5);
    let err = client().check_response(&resp, 0x1234, Some(&mac), "_acme-challenge.a.unity.test").unwrap_err();
    assert_eq!(
        err.to_string(),
        "DNS server 127.0.0.1:53 refused the update for _acme-challenge.a.unity.test (REFUSED)"
    );
}

#[test]
fn unsigned_success_is_rejected() {
    let resp = [0x12, 0x34, 0xA8, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let (_, mac) = request();
    let err = client().check_response(&resp, 0x1234, Some(&mac), "n").unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
    // Without a key, the same bare header is a success.
    let mut c = client();
    c.key = None;
    c.check_response(&resp, 0x1234, None, "n").unwrap();
}

#[test]
fn truncated_responses_are_errors() {
    let (req, mac) = request();
    let resp = signed_response(&req, &mac, &key(), 0);
    let c = client();
    for len in 0..resp.len() {
        let err = c.check_response(&resp[..len], 0x1234, Some(&mac), "n").unwrap_err();
        assert!(matches!(err, DnsError::Malformed { .. } | DnsError::BadResponseSignature { .. }), "len {len}: {err}");
    }
    // Self-referencing compression pointer must not loop.
    let looped = [0x12, 0x34, 0xA8, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 6, 0, 1];
    assert!(parse_response(&looped).is_err());
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (_sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let c = Rfc2136 { server, zone: "unity.test".into(), key: Some(key()), timeout: Duration::from_millis(200) };
    let err = c.add_txt("a.unity.test", "v", 60).await.unwrap_err();
    assert_eq!(err.to_string(), format!("no answer from {server} within 200ms"));
    hold.abort();
}
