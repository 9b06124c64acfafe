//! RFC 2136 DNS UPDATE client with RFC 8945 TSIG signing.
//!
//! Exists so the ACME client can publish `_acme-challenge` TXT records on any
//! authoritative server that accepts dynamic updates (knot, BIND, PowerDNS)
//! without pulling in a full DNS library: we only ever build one message shape
//! and read back a header, so the wire format is written by hand.

mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wire::*;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 8945 recommends 300 s; servers reject anything outside it as BADTIME.
const FUDGE: u16 = 300;
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

#[cfg(test)]
mod tests;
