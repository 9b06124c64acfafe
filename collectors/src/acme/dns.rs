//! RFC 2136 DNS UPDATE client with RFC 8945 TSIG signing.
//!
//! Exists so the ACME client can publish `_acme-challenge` TXT records on any
//! authoritative server that accepts dynamic updates (knot, BIND, PowerDNS)
//! without pulling in a full DNS library: we only ever build one message shape
//! and read back a header, so the wire format is written by hand.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TYPE_SOA: u16 = 6;
const TYPE_TXT: u16 = 16;
const TYPE_TSIG: u16 = 250;
const CLASS_IN: u16 = 1;
const CLASS_NONE: u16 = 254;
const CLASS_ANY: u16 = 255;
const OPCODE_UPDATE: u8 = 5;
/// RFC 8945 recommends 300 s; servers reject anything outside it as BADTIME.
const FUDGE: u16 = 300;
const HEADER_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

impl TsigAlgorithm {
    /// Accepts the spellings found in BIND/knot key files and CLI flags.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.eq_ignore_ascii_case("hmac-sha256") {
            Some(Self::HmacSha256)
        } else if s.eq_ignore_ascii_case("hmac-sha512") {
            Some(Self::HmacSha512)
        } else {
            None
        }
    }

    /// The algorithm is identified on the wire by a domain name.
    fn wire_name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256.",
            Self::HmacSha512 => "hmac-sha512.",
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name().trim_end_matches('.'))
    }
}

#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    /// Raw secret bytes; the caller base64-decodes the configured value.
    pub secret: Vec<u8>,
}

/// Hand-written so the secret never ends up in logs.
impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Rfc2136 {
    pub server: SocketAddr,
    pub zone: String,
    pub key: Option<TsigKey>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("name {name} is not inside zone {zone}")]
    OutsideZone { name: String, zone: String },
    #[error("TXT value is too long ({len} bytes) to fit in one DNS record")]
    ValueTooLong { len: usize },
    #[error("cannot connect to DNS server {server}: {source}")]
    Connect { server: SocketAddr, source: std::io::Error },
    #[error("I/O error talking to DNS server {server}: {source}")]
    Io { server: SocketAddr, source: std::io::Error },
    #[error("no answer from {server} within {}", fmt_duration(.timeout))]
    Timeout { server: SocketAddr, timeout: Duration },
    #[error("DNS server {server} refused the update for {name} ({rcode})")]
    Refused { server: SocketAddr, name: String, rcode: String },
    #[error("TSIG key rejected by the server ({code})")]
    TsigRejected { code: String },
    #[error("TSIG time rejected by the server (BADTIME); check this host's clock")]
    TsigBadTime,
    #[error("response from {server} failed TSIG verification: {reason}")]
    BadResponseSignature { server: SocketAddr, reason: &'static str },
    #[error("malformed response from {server}: {reason}")]
    Malformed { server: SocketAddr, reason: &'static str },
}

fn fmt_duration(d: &Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{d:?}")
    }
}

impl Rfc2136 {
    /// Adds one TXT RR; existing values at the name are kept, which lets
    /// several concurrent challenges for the same name coexist.
    pub async fn add_txt(&self, fqdn: &str, value: &str, ttl: u32) -> Result<(), DnsError> {
        self.update(fqdn, value, CLASS_IN, ttl).await
    }

    /// Deletes only this value (class NONE), so a parallel challenge's record survives.
    pub async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.update(fqdn, value, CLASS_NONE, 0).await
    }

    async fn update(&self, fqdn: &str, value: &str, class: u16, ttl: u32) -> Result<(), DnsError> {
        let zone_wire = encode_name(&self.zone)?;
        let name_wire = encode_name(fqdn)?;
        if !in_zone(&name_wire, &zone_wire) {
            return Err(DnsError::OutsideZone { name: display_name(fqdn), zone: display_name(&self.zone) });
        }
        let rdata = txt_rdata(value)?;
        let id = random_id();
        let msg = build_update(id, &zone_wire, &name_wire, class, ttl, &rdata);
        let (msg, request_mac) = match &self.key {
            Some(key) => {
                let (signed, mac) = sign_request(msg, key, unix_now())?;
                (signed, Some(mac))
            }
            None => (msg, None),
        };
        if msg.len() > usize::from(u16::MAX) {
            return Err(DnsError::ValueTooLong { len: value.len() });
        }
        let resp = tokio::time::timeout(self.timeout, self.exchange(&msg))
            .await
            .map_err(|_| DnsError::Timeout { server: self.server, timeout: self.timeout })??;
        self.check_response(&resp, id, request_mac.as_deref(), &display_name(fqdn))
    }

    async fn exchange(&self, msg: &[u8]) -> Result<Vec<u8>, DnsError> {
        let server = self.server;
        let io = |source| DnsError::Io { server, source };
        let mut stream = TcpStream::connect(server).await.map_err(|source| DnsError::Connect { server, source })?;
        let mut framed = Vec::with_capacity(msg.len() + 2);
        framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        framed.extend_from_slice(msg);
        stream.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io)?;
        let mut resp = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut resp).await.map_err(io)?;
        Ok(resp)
    }

    fn check_response(&self, resp: &[u8], id: u16, request_mac: Option<&[u8]>, name: &str) -> Result<(), DnsError> {
        let server = self.server;
        let malformed = |reason| DnsError::Malformed { server, reason };
        let parsed = parse_response(resp).map_err(malformed)?;
        if parsed.id != id {
            return Err(malformed("response ID does not match the request"));
        }
        if !parsed.qr || parsed.opcode != OPCODE_UPDATE {
            return Err(malformed("not a response to an UPDATE"));
        }
        if parsed.tc {
            return Err(malformed("response is truncated"));
        }
        // A TSIG error explains a NOTAUTH better than the RCODE does, so it goes first.
        if let Some(tsig) = &parsed.tsig {
            match tsig.error {
                0 => {}
                18 => return Err(DnsError::TsigBadTime),
                code => return Err(DnsError::TsigRejected { code: tsig_error_name(code) }),
            }
        }
        if let (Some(key), Some(request_mac)) = (&self.key, request_mac) {
            match &parsed.tsig {
                Some(tsig) => verify_response(resp, tsig, key, request_mac, unix_now())
                    .map_err(|reason| DnsError::BadResponseSignature { server, reason })?,
                // Unsigned errors are still worth reporting as such; an unsigned
                // success is not trustworthy.
                None if parsed.rcode == 0 => {
                    return Err(DnsError::BadResponseSignature { server, reason: "response is not signed" })
                }
                None => {}
            }
        }
        if parsed.rcode != 0 {
            return Err(DnsError::Refused { server, name: name.to_string(), rcode: rcode_name(parsed.rcode) });
        }
        Ok(())
    }
}

fn display_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_string()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unpredictable IDs are cheap defence against blind response spoofing.
fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SystemRandom only fails if the OS RNG is unavailable; a fixed ID is still a valid message.
    let _ = SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

fn rcode_name(rcode: u16) -> String {
    let name = match rcode {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        n => return format!("RCODE {n}"),
    };
    name.to_string()
}

fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG".to_string(),
        17 => "BADKEY".to_string(),
        18 => "BADTIME".to_string(),
        22 => "BADTRUNC".to_string(),
        n => rcode_name(n),
    }
}

/// Uncompressed wire form, lowercased: TSIG requires canonical names and the
/// zone check wants case-insensitive comparison, so one form serves both.
fn encode_name(name: &str) -> Result<Vec<u8>, DnsError> {
    let invalid = |reason| DnsError::InvalidName { name: name.to_string(), reason };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(invalid("empty label"));
            }
            if label.len() > 63 {
                return Err(invalid("label longer than 63 bytes"));
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    } else if name.is_empty() {
        return Err(invalid("empty name"));
    }
    out.push(0);
    if out.len() > 255 {
        return Err(invalid("name longer than 255 bytes"));
    }
    Ok(out)
}

/// Compares label-wise on the wire form so `evilunity.test` is not taken as inside `unity.test`.
fn in_zone(name: &[u8], zone: &[u8]) -> bool {
    let mut pos = 0;
    while pos < name.len() {
        if name[pos..] == *zone {
            return true;
        }
        pos += usize::from(name[pos]) + 1;
    }
    false
}

/// Values over 255 bytes must be split into several character-strings; verifiers concatenate them.
fn txt_rdata(value: &str) -> Result<Vec<u8>, DnsError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 255 + 1);
    if bytes.is_empty() {
        out.push(0);
    }
    for chunk in bytes.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(DnsError::ValueTooLong { len: bytes.len() });
    }
    Ok(out)
}

fn build_update(id: u16, zone: &[u8], name: &[u8], class: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + zone.len() + name.len() + rdata.len() + 20);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&(u16::from(OPCODE_UPDATE) << 11).to_be_bytes());
    for count in [1u16, 0, 1, 0] {
        m.extend_from_slice(&count.to_be_bytes());
    }
    m.extend_from_slice(zone);
    m.extend_from_slice(&TYPE_SOA.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m.extend_from_slice(name);
    m.extend_from_slice(&TYPE_TXT.to_be_bytes());
    m.extend_from_slice(&class.to_be_bytes());
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(rdata);
    m
}

fn put_time48(buf: &mut Vec<u8>, t: u64) {
    buf.extend_from_slice(&t.to_be_bytes()[2..]);
}

/// Returns the signed message and the request MAC, which the response MAC covers.
fn sign_request(mut msg: Vec<u8>, key: &TsigKey, now: u64) -> Result<(Vec<u8>, Vec<u8>), DnsError> {
    let key_name = encode_name(&key.name)?;
    let alg_name = encode_name(key.algorithm.wire_name())?;
    let original_id = [msg[0], msg[1]];

    // MAC input per RFC 8945 §4.3.3: the message as sent so far, then the TSIG variables.
    let mut vars = Vec::with_capacity(key_name.len() + alg_name.len() + 16);
    vars.extend_from_slice(&key_name);
    vars.extend_from_slice(&CLASS_ANY.to_be_bytes());
    vars.extend_from_slice(&0u32.to_be_bytes());
    vars.extend_from_slice(&alg_name);
    put_time48(&mut vars, now);
    vars.extend_from_slice(&FUDGE.to_be_bytes());
    vars.extend_from_slice(&0u16.to_be_bytes()); // error
    vars.extend_from_slice(&0u16.to_be_bytes()); // other len

    let hkey = hmac::Key::new(key.algorithm.ring(), &key.secret);
    let mut ctx = hmac::Context::with_key(&hkey);
    ctx.update(&msg);
    ctx.update(&vars);
    let mac = ctx.sign().as_ref().to_vec();

    let mut rdata = Vec::with_capacity(alg_name.len() + 16 + mac.len());
    rdata.extend_from_slice(&alg_name);
    put_time48(&mut rdata, now);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&original_id);
    rdata.extend_from_slice(&0u16.to_be_bytes()); // error
    rdata.extend_from_slice(&0u16.to_be_bytes()); // other len

    msg.extend_from_slice(&key_name);
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    msg.extend_from_slice(&rdata);
    let arcount = u16::from_be_bytes([msg[10], msg[11]]) + 1;
    msg[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok((msg, mac))
}

#[derive(Debug)]
struct Response {
    id: u16,
    qr: bool,
    opcode: u8,
    tc: bool,
    rcode: u16,
    tsig: Option<Tsig>,
}

#[derive(Debug)]
struct Tsig {
    /// Offset of the TSIG RR; the response MAC covers everything before it.
    start: usize,
    key_name: Vec<u8>,
    alg_name: Vec<u8>,
    time_signed: u64,
    fudge: u16,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

/// Bounds-checked cursor: every read can fail, so hostile input yields an error, never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const TRUNCATED: &str = "response is truncated";

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or(TRUNCATED)?;
        let s = self.buf.get(self.pos..end).ok_or(TRUNCATED)?;
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u48(&mut self) -> Result<u64, &'static str> {
        let b = self.take(6)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Reads a possibly compressed name and returns it uncompressed and lowercased.
    fn name(&mut self) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::new();
        let mut pos = self.pos;
        let mut resume = None;
        // Each pointer must go strictly backwards, so loops are impossible.
        let mut limit = pos;
        loop {
            let len = *self.buf.get(pos).ok_or(TRUNCATED)?;
            match len & 0xC0 {
                0x00 => {
                    let label = self.buf.get(pos + 1..pos + 1 + usize::from(len)).ok_or(TRUNCATED)?;
                    out.push(len);
                    out.extend(label.iter().map(|b| b.to_ascii_lowercase()));
                    if out.len() > 255 {
                        return Err("name in response is too long");
                    }
                    pos += 1 + usize::from(len);
                    if len == 0 {
                        break;
                    }
                }
                0xC0 => {
                    let lo = *self.buf.get(pos + 1).ok_or(TRUNCATED)?;
                    let target = (usize::from(len & 0x3F) << 8) | usize::from(lo);
                    if target >= limit {
                        return Err("bad compression pointer in response");
                    }
                    resume.get_or_insert(pos + 2);
                    limit = target;
                    pos = target;
                }
                _ => return Err("unsupported label type in response"),
            }
        }
        self.pos = resume.unwrap_or(pos);
        Ok(out)
    }
}

fn parse_response(buf: &[u8]) -> Result<Response, &'static str> {
    let mut r = Reader { buf, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let qd = r.u16()?;
    let an = r.u16()?;
    let ns = r.u16()?;
    let ar = r.u16()?;
    for _ in 0..qd {
        r.name()?;
        r.take(4)?;
    }
    let mut tsig = None;
    let total = u32::from(an) + u32::from(ns) + u32::from(ar);
    for i in 0..total {
        let start = r.pos;
        let owner = r.name()?;
        let rtype = r.u16()?;
        r.take(6)?; // class, TTL
        let rdlen = usize::from(r.u16()?);
        let rdata_start = r.pos;
        r.take(rdlen)?;
        if rtype == TYPE_TSIG {
            if i + 1 != total {
                return Err("TSIG record is not the last record");
            }
            tsig = Some(parse_tsig(&buf[..r.pos], start, owner, rdata_start)?);
        }
    }
    Ok(Response {
        id,
        qr: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0F) as u8,
        tc: flags & 0x0200 != 0,
        rcode: flags & 0x000F,
        tsig,
    })
}

/// `buf` ends where the TSIG RDATA ends, so reads cannot run past the record.
fn parse_tsig(buf: &[u8], start: usize, key_name: Vec<u8>, rdata_start: usize) -> Result<Tsig, &'static str> {
    // The algorithm name should not be compressed, but tolerating a pointer costs nothing.
    let mut r = Reader { buf, pos: rdata_start };
    let alg_name = r.name()?;
    let time_signed = r.u48()?;
    let fudge = r.u16()?;
    let mac_len = usize::from(r.u16()?);
    let mac = r.take(mac_len)?.to_vec();
    let original_id = r.u16()?;
    let error = r.u16()?;
    let other_len = usize::from(r.u16()?);
    let other = r.take(other_len)?.to_vec();
    Ok(Tsig { start, key_name, alg_name, time_signed, fudge, mac, original_id, error, other })
}

/// RFC 8945 §5.3: the response MAC chains to the request MAC, proving the
/// answer came from a key holder and belongs to our request.
fn verify_response(resp: &[u8], tsig: &Tsig, key: &TsigKey, request_mac: &[u8], now: u64) -> Result<(), &'static str> {
    let key_name = encode_name(&key.name).map_err(|_| "invalid key name")?;
    let alg_name = encode_name(key.algorithm.wire_name()).map_err(|_| "invalid algorithm name")?;
    if tsig.key_name != key_name {
        return Err("signed with a different key");
    }
    if tsig.alg_name != alg_name {
        return Err("signed with a different algorithm");
    }
    let mut body = resp.get(..tsig.start).ok_or(TRUNCATED)?.to_vec();
    if body.len() < HEADER_LEN {
        return Err(TRUNCATED);
    }
    body[0..2].copy_from_slice(&tsig.original_id.to_be_bytes());
    let arcount = u16::from_be_bytes([body[10], body[11]]).checked_sub(1).ok_or("bad additional count")?;
    body[10..12].copy_from_slice(&arcount.to_be_bytes());

    // hmac::verify wants one buffer; it compares in constant time.
    let mut signed = Vec::with_capacity(body.len() + request_mac.len() + 64);
    signed.extend_from_slice(&(request_mac.len() as u16).to_be_bytes());
    signed.extend_from_slice(request_mac);
    signed.extend_from_slice(&body);
    signed.extend_from_slice(&tsig.key_name);
    signed.extend_from_slice(&CLASS_ANY.to_be_bytes());
    signed.extend_from_slice(&0u32.to_be_bytes());
    signed.extend_from_slice(&tsig.alg_name);
    put_time48(&mut signed, tsig.time_signed);
    signed.extend_from_slice(&tsig.fudge.to_be_bytes());
    signed.extend_from_slice(&tsig.error.to_be_bytes());
    signed.extend_from_slice(&(tsig.other.len() as u16).to_be_bytes());
    signed.extend_from_slice(&tsig.other);
    let hkey = hmac::Key::new(key.algorithm.ring(), &key.secret);
    // Truncated MACs (RFC 8945 §5.2.2.1) are never requested, so only the full length verifies.
    if hmac::verify(&hkey, &signed, &tsig.mac).is_err() {
        return Err("MAC does not match");
    }
    if now.abs_diff(tsig.time_signed) > u64::from(tsig.fudge) {
        return Err("signature time is outside the allowed fudge");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
            assert!(
                matches!(err, DnsError::Malformed { .. } | DnsError::BadResponseSignature { .. }),
                "len {len}: {err}"
            );
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
}
