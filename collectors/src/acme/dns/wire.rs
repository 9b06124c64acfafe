//! The DNS wire format of the one message shape Unity sends (an UPDATE of one TXT record, TSIG
//! signed) and of the answers it reads back.

use ring::hmac;

use super::*;

pub(super) const TYPE_SOA: u16 = 6;

pub(super) const TYPE_TXT: u16 = 16;

pub(super) const TYPE_TSIG: u16 = 250;

pub(super) const CLASS_IN: u16 = 1;

pub(super) const CLASS_NONE: u16 = 254;

pub(super) const CLASS_ANY: u16 = 255;

pub(super) const OPCODE_UPDATE: u8 = 5;

pub(super) const HEADER_LEN: usize = 12;

pub(super) fn rcode_name(rcode: u16) -> String {
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

pub(super) fn tsig_error_name(code: u16) -> String {
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
pub(super) fn encode_name(name: &str) -> Result<Vec<u8>, DnsError> {
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

/// Values over 255 bytes must be split into several character-strings; verifiers concatenate them.
pub(super) fn txt_rdata(value: &str) -> Result<Vec<u8>, DnsError> {
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

pub(super) fn build_update(id: u16, zone: &[u8], name: &[u8], class: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
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

pub(super) fn put_time48(buf: &mut Vec<u8>, t: u64) {
    buf.extend_from_slice(&t.to_be_bytes()[2..]);
}

/// Returns the signed message and the request MAC, which the response MAC covers.
pub(super) fn sign_request(mut msg: Vec<u8>, key: &TsigKey, now: u64) -> Result<(Vec<u8>, Vec<u8>), DnsError> {
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
pub(super) struct Response {
    pub(super) id: u16,
    pub(super) qr: bool,
    pub(super) opcode: u8,
    pub(super) tc: bool,
    pub(super) rcode: u16,
    pub(super) tsig: Option<Tsig>,
}

#[derive(Debug)]
pub(super) struct Tsig {
    /// Offset of the TSIG RR; the response MAC covers everything before it.
    pub(super) start: usize,
    pub(super) key_name: Vec<u8>,
    pub(super) alg_name: Vec<u8>,
    pub(super) time_signed: u64,
    pub(super) fudge: u16,
    pub(super) mac: Vec<u8>,
    pub(super) original_id: u16,
    pub(super) error: u16,
    pub(super) other: Vec<u8>,
}

/// Bounds-checked cursor: every read can fail, so hostile input yields an error, never a panic.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

pub(super) const TRUNCATED: &str = "response is truncated";

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or(TRUNCATED)?;
        let s = self.buf.get(self.pos..end).ok_or(TRUNCATED)?;
        self.pos = end;
        Ok(s)
    }
    pub(super) fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn u48(&mut self) -> Result<u64, &'static str> {
        let b = self.take(6)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Reads a possibly compressed name and returns it uncompressed and lowercased.
    pub(super) fn name(&mut self) -> Result<Vec<u8>, &'static str> {
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

pub(super) fn parse_response(buf: &[u8]) -> Result<Response, &'static str> {
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
pub(super) fn parse_tsig(
    buf: &[u8],
    start: usize,
    key_name: Vec<u8>,
    rdata_start: usize,
) -> Result<Tsig, &'static str> {
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
pub(super) fn verify_response(
    resp: &[u8],
    tsig: &Tsig,
    key: &TsigKey,
    request_mac: &[u8],
    now: u64,
) -> Result<(), &'static str> {
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
