//! SMART: smartctl's JSON (`--scan-open`, then `--json --xall -n standby` per device) turned into
//! a device with a verdict per attribute and overall.
//!
//! The verdicts follow Scrutiny's rules (Backblaze failure rates per raw-value bucket for the
//! critical ATA attributes, fixed rules for NVMe and SCSI), shipped as versioned data in
//! `smart_rules.json`, with Scrutiny's known false alarms fixed:
//! - a value that falls in no bucket is judged by the nearest bucket, never a warning by itself;
//! - Seagate's attribute 188 packs three 16-bit counters into its raw value: the total is used;
//! - cumulative error counters (199 CRC errors, NVMe media errors, SCSI grown defects…) count
//!   when they grow past a baseline (the value when the disk was first seen, or the value an
//!   operator accepted), not forever for an old fault;
//! - non-critical attributes can warn but never fail a disk.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::OnceLock,
};

use serde::Deserialize;
use serde_json::Value;
use unity_domain::monitoring::{DeviceKind, SmartAttribute, StorageDevice, Verdict};

use super::ParseError;

#[derive(Debug, Deserialize)]
pub struct Rules {
    pub version: u32,
    pub ata: Vec<AtaRule>,
}

#[derive(Debug, Deserialize)]
pub struct AtaRule {
    pub id: u32,
    pub critical: bool,
    /// `cumulative` counters never go down; `current` ones (pending sectors) can.
    pub kind: String,
    /// `raw`, `normalized` or `transformed` (188 decoded, 194's low byte).
    pub value_source: String,
    #[serde(default)]
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Deserialize)]
pub struct Bucket {
    pub low: i64,
    pub high: i64,
    pub annual_failure_rate: f64,
}

/// A critical attribute fails a disk at this annualised failure rate (Scrutiny's 10 %).
const CRITICAL_FAIL_RATE: f64 = 0.10;
/// A non-critical attribute warns at this rate (Scrutiny fails it at 20 %; here it only warns).
const NONCRITICAL_WARN_RATE: f64 = 0.20;

pub fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        // The file is part of the source; a test parses it, so this cannot fail in a build that passed.
        serde_json::from_str(include_str!("smart_rules.json")).unwrap_or(Rules { version: 0, ata: Vec::new() })
    })
}

/// A device `smartctl --scan-open --json` found: its node and the `-d` type to read it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedDevice {
    pub name: String,
    pub device_type: String,
}

pub fn parse_scan(text: &str) -> Result<Vec<ScannedDevice>, ParseError> {
    let json: Value =
        serde_json::from_str(text).map_err(|e| ParseError::new("smartctl --scan", format!("not JSON ({e})")))?;
    let devices = json["devices"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(devices
        .iter()
        .filter_map(|d| {
            Some(ScannedDevice {
                name: d["name"].as_str()?.to_string(),
                device_type: d["type"].as_str().unwrap_or("auto").to_string(),
            })
        })
        .collect())
}

/// What the judge knows beyond this reading, per attribute id: the value a cumulative counter
/// had when the disk was first seen, the values an operator accepted, and the attributes an
/// operator said to ignore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub first_seen: BTreeMap<String, i64>,
    pub accepted: BTreeMap<String, i64>,
    pub ignored: BTreeSet<String>,
}

impl Context {
    /// The value a counter's growth is measured from: the accepted one, else the first seen.
    fn baseline(&self, id: &str) -> Option<i64> {
        self.accepted.get(id).or_else(|| self.first_seen.get(id)).copied()
    }
}

/// What one smartctl run said about a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    Device(Box<StorageDevice>),
    /// In standby or sleep: not woken, nothing read.
    Asleep,
    /// smartctl could not open or read the device; its message.
    Unreadable(String),
}

/// smartctl's exit status bits (`man smartctl`, EXIT STATUS), in words.
pub fn exit_status_words(status: u8) -> Vec<&'static str> {
    const BITS: [&str; 8] = [
        "command line did not parse",
        "device open failed",
        "a SMART or ATA command failed, or a checksum error",
        "SMART status: DISK FAILING",
        "prefail attributes at or below their threshold",
        "attributes at or below their threshold in the past",
        "the device error log has errors",
        "the self-test log has errors",
    ];
    (0..8).filter(|bit| status & (1 << bit) != 0).map(|bit| BITS[bit]).collect()
}

/// Seagate's 188 Command Timeout: three 16-bit counters in the 48-bit raw value, the total in the
/// low word. smartctl's `raw16` string prints them high word first; a plain raw value is split
/// here the same way, and taken as a plain count unless the words are ordered as the layout
/// implies (total ≥ over 5 s ≥ over 7.5 s).
pub fn command_timeouts(raw: i64, raw_string: &str) -> i64 {
    let words: Vec<i64> = raw_string.split_ascii_whitespace().filter_map(|w| w.parse().ok()).collect();
    if let [over_7_5s, over_5s, total] = words[..] {
        if total >= over_5s && over_5s >= over_7_5s {
            return total;
        }
    }
    let (total, over_5s, over_7_5s) = (raw & 0xFFFF, (raw >> 16) & 0xFFFF, (raw >> 32) & 0xFFFF);
    if raw > 0xFFFF && total >= over_5s && over_5s >= over_7_5s {
        total
    } else {
        raw
    }
}

/// The serial number in one device's smartctl JSON, to find what is known about the disk.
pub fn serial_of(text: &str) -> Option<String> {
    let json: Value = serde_json::from_str(text).ok()?;
    json["serial_number"].as_str().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn failure_rate(rule: &AtaRule, value: i64) -> Option<f64> {
    let first = rule.buckets.first()?;
    let last = rule.buckets.last()?;
    let index = rule.buckets.iter().position(|b| b.low <= value && value <= b.high);
    let index = match index {
        Some(i) => i,
        // Outside every bucket: the nearest end, not "unknown" (Scrutiny's false alarm).
        None if value < first.low => 0,
        None if value > last.high => rule.buckets.len() - 1,
        None => rule.buckets.iter().rposition(|b| b.high < value).unwrap_or(0),
    };
    // A rate of 0 is a bucket too small to have seen a failure, not proof of safety: the rate of
    // the nearest bucket below with data.
    rule.buckets[..=index].iter().rev().map(|b| b.annual_failure_rate).find(|r| *r > 0.0)
}

fn i(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_u64().map(|u| u as i64))
}

/// Parses one device's `smartctl --json --xall -n standby` output and judges it.
pub fn parse_device(text: &str, context: &Context) -> Result<Reading, ParseError> {
    let json: Value = serde_json::from_str(text).map_err(|e| ParseError::new("smartctl", format!("not JSON ({e})")))?;
    let exit_status = i(&json["smartctl"]["exit_status"]).unwrap_or(0) as u8;
    let messages: Vec<&str> = json["smartctl"]["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["string"].as_str()).collect())
        .unwrap_or_default();
    if messages.iter().any(|m| m.contains("STANDBY") || m.contains("SLEEP")) {
        return Ok(Reading::Asleep);
    }
    let protocol = json["device"]["protocol"].as_str().unwrap_or("");
    let kind = match protocol {
        "ATA" => DeviceKind::Ata,
        "NVMe" => DeviceKind::Nvme,
        "SCSI" => DeviceKind::Scsi,
        _ if exit_status & 0b11 != 0 || json["device"].is_null() => {
            let words = exit_status_words(exit_status).join("; ");
            return Ok(Reading::Unreadable(messages.first().map(|m| m.to_string()).unwrap_or(words)));
        }
        other => return Err(ParseError::new("smartctl", format!("unknown protocol `{other}`"))),
    };
    let text_of = |v: &Value| v.as_str().unwrap_or("").trim().to_string();
    let mut device = StorageDevice {
        name: text_of(&json["device"]["name"]),
        device_type: text_of(&json["device"]["type"]),
        kind,
        model: [&json["model_name"], &json["scsi_model_name"], &json["scsi_product"]]
            .into_iter()
            .map(text_of)
            .find(|m| !m.is_empty())
            .unwrap_or_default(),
        serial: text_of(&json["serial_number"]),
        firmware: [&json["firmware_version"], &json["scsi_revision"]]
            .into_iter()
            .map(text_of)
            .find(|m| !m.is_empty())
            .unwrap_or_default(),
        capacity_bytes: json["user_capacity"]["bytes"].as_u64().or_else(|| json["nvme_total_capacity"].as_u64()),
        temperature_c: i(&json["temperature"]["current"]),
        power_on_hours: json["power_on_time"]["hours"].as_u64(),
        wear_percent: None,
        self_assessment_passed: json["smart_status"]["passed"].as_bool(),
        exit_status,
        verdict: Verdict::Passed,
        reasons: Vec::new(),
        attributes: Vec::new(),
    };
    match kind {
        DeviceKind::Ata => ata_attributes(&json, context, &mut device),
        DeviceKind::Nvme => nvme_attributes(&json, context, &mut device),
        DeviceKind::Scsi => scsi_attributes(&json, context, &mut device),
    }
    judge_device(&mut device);
    Ok(Reading::Device(Box::new(device)))
}

/// A cumulative counter against its baseline: `None` when there is no baseline yet (the first
/// reading sets it), else whether it grew.
fn grew(context: &Context, id: &str, raw: i64) -> Option<bool> {
    context.baseline(id).map(|baseline| raw > baseline)
}

fn ata_attributes(json: &Value, context: &Context, device: &mut StorageDevice) {
    let rules = rules();
    let table = json["ata_smart_attributes"]["table"].as_array().map(Vec::as_slice).unwrap_or_default();
    for row in table {
        let Some(number) = i(&row["id"]) else { continue };
        let id = number.to_string();
        let raw_value = i(&row["raw"]["value"]).unwrap_or(0);
        let raw_string = row["raw"]["string"].as_str().unwrap_or("");
        let value = i(&row["value"]);
        let raw = match number {
            188 => command_timeouts(raw_value, raw_string),
            // Temperatures pack min/max into the high bytes.
            190 | 194 => raw_value & 0xFF,
            _ => raw_value,
        };
        let mut attribute = SmartAttribute {
            id: id.clone(),
            name: row["name"].as_str().unwrap_or("").to_string(),
            value,
            worst: i(&row["worst"]),
            threshold: i(&row["thresh"]),
            raw,
            verdict: Verdict::Passed,
            note: None,
        };
        if number == 194 && device.temperature_c.is_none() {
            device.temperature_c = Some(raw);
        }
        if context.ignored.contains(&id) {
            attribute.note = Some("ignored by an override".into());
            device.attributes.push(attribute);
            continue;
        }
        let rule = rules.ata.iter().find(|r| i64::from(r.id) == number);
        match row["when_failed"].as_str().unwrap_or("") {
            "now" => {
                attribute.verdict = Verdict::Failed;
                attribute.note = Some("at or below the manufacturer's threshold now".into());
            }
            "past" => {
                attribute.verdict = Verdict::Warning;
                attribute.note = Some("was at or below the manufacturer's threshold in the past".into());
            }
            _ => {}
        }
        if let Some(rule) = rule.filter(|_| attribute.verdict == Verdict::Passed) {
            let judged = if rule.value_source == "normalized" { value.unwrap_or(0) } else { raw };
            let cumulative = rule.kind == "cumulative";
            match (rule.critical, cumulative, grew(context, &id, raw)) {
                // A critical value an operator accepted stays accepted until it grows.
                _ if rule.critical && context.accepted.get(&id).is_some_and(|a| raw <= *a) => {
                    attribute.note = Some("accepted by an override".into());
                }
                (true, _, _) => {
                    if let Some(rate) = failure_rate(rule, judged).filter(|r| *r >= CRITICAL_FAIL_RATE) {
                        attribute.verdict = Verdict::Failed;
                        attribute.note =
                            Some(format!("{:.0} % annual failure rate at this value (Backblaze)", rate * 100.0));
                    }
                }
                // Non-critical cumulative counters (CRC errors, high-fly writes) warn only when they grow.
                (false, true, Some(true)) => {
                    attribute.verdict = Verdict::Warning;
                    attribute.note = Some(format!("grew from {}", context.baseline(&id).unwrap_or(0)));
                }
                (false, true, _) => {}
                (false, false, _) => {
                    if let Some(rate) = failure_rate(rule, judged).filter(|r| *r >= NONCRITICAL_WARN_RATE) {
                        attribute.verdict = Verdict::Warning;
                        attribute.note =
                            Some(format!("{:.0} % annual failure rate at this value (Backblaze)", rate * 100.0));
                    }
                }
            }
        }
        device.attributes.push(attribute);
    }
    // SSDs report wear in the device statistics log (`-x`): "Percentage Used Endurance Indicator".
    let pages = json["ata_device_statistics"]["pages"].as_array().map(Vec::as_slice).unwrap_or_default();
    device.wear_percent = pages
        .iter()
        .flat_map(|p| p["table"].as_array().map(Vec::as_slice).unwrap_or_default())
        .find(|e| e["name"].as_str() == Some("Percentage Used Endurance Indicator"))
        .and_then(|e| e["value"].as_u64());
}

/// An NVMe or SCSI attribute: a raw value with no normalised value or threshold.
fn raw_attribute(id: &str, name: &str, raw: i64, verdict: Verdict, note: Option<String>) -> SmartAttribute {
    SmartAttribute { id: id.into(), name: name.into(), value: None, worst: None, threshold: None, raw, verdict, note }
}

fn counter_attribute(context: &Context, id: &str, name: &str, raw: i64) -> SmartAttribute {
    let mut attribute = raw_attribute(id, name, raw, Verdict::Passed, None);
    if context.ignored.contains(id) {
        attribute.note = Some("ignored by an override".into());
        return attribute;
    }
    match grew(context, id, raw) {
        Some(true) => {
            attribute.verdict = Verdict::Failed;
            attribute.note = Some(format!("grew from {}", context.baseline(id).unwrap_or(0)));
        }
        _ if raw > 0 && context.baseline(id).is_none_or(|b| b > 0) && !context.accepted.contains_key(id) => {
            attribute.verdict = Verdict::Warning;
            attribute.note = Some("not zero when first seen; fails if it grows".into());
        }
        _ => {}
    }
    attribute
}

fn nvme_attributes(json: &Value, context: &Context, device: &mut StorageDevice) {
    let log = &json["nvme_smart_health_information_log"];
    let get = |key: &str| i(&log[key]);
    let plain = raw_attribute;
    if let Some(warning) = get("critical_warning") {
        const BITS: [&str; 6] = [
            "spare below threshold",
            "temperature",
            "reliability degraded",
            "read-only",
            "volatile backup failed",
            "persistent memory read-only",
        ];
        let set: Vec<&str> = (0..6).filter(|b| warning & (1 << b) != 0).map(|b| BITS[b]).collect();
        let (verdict, note) =
            if warning > 0 { (Verdict::Failed, Some(set.join(", "))) } else { (Verdict::Passed, None) };
        device.attributes.push(plain("critical_warning", "Critical Warning", warning, verdict, note));
    }
    if let (Some(spare), Some(threshold)) = (get("available_spare"), get("available_spare_threshold")) {
        let verdict = if spare < threshold { Verdict::Failed } else { Verdict::Passed };
        let mut attribute = plain("available_spare", "Available Spare", spare, verdict, None);
        attribute.threshold = Some(threshold);
        device.attributes.push(attribute);
    }
    if let Some(used) = get("percentage_used") {
        device.wear_percent = Some(used as u64);
        let (verdict, note) = match used {
            u if u > 100 => (Verdict::Failed, Some("past its rated endurance".to_string())),
            u if u >= 90 => (Verdict::Warning, Some("near its rated endurance".to_string())),
            _ => (Verdict::Passed, None),
        };
        device.attributes.push(plain("percentage_used", "Percentage Used", used, verdict, note));
    }
    if let Some(errors) = get("media_errors") {
        device.attributes.push(counter_attribute(context, "media_errors", "Media and Data Integrity Errors", errors));
    }
    if let Some(entries) = get("num_err_log_entries") {
        // Grows with harmless host-side errors on many drives: shown, never judged.
        device.attributes.push(plain(
            "num_err_log_entries",
            "Error Information Log Entries",
            entries,
            Verdict::Passed,
            None,
        ));
    }
    if device.power_on_hours.is_none() {
        device.power_on_hours = get("power_on_hours").map(|h| h as u64);
    }
}

fn scsi_attributes(json: &Value, context: &Context, device: &mut StorageDevice) {
    if let Some(defects) = i(&json["scsi_grown_defect_list"]) {
        device.attributes.push(counter_attribute(context, "scsi_grown_defect_list", "Grown Defect List", defects));
    }
    for direction in ["read", "write", "verify"] {
        let log = &json["scsi_error_counter_log"][direction];
        if let Some(uncorrected) = i(&log["total_uncorrected_errors"]) {
            let id = format!("{direction}.total_uncorrected_errors");
            device.attributes.push(counter_attribute(
                context,
                &id,
                &format!("Uncorrected {direction} errors"),
                uncorrected,
            ));
        }
    }
}

fn judge_device(device: &mut StorageDevice) {
    let mut verdict = device.attributes.iter().map(|a| a.verdict).max().unwrap_or(Verdict::Passed).max(Verdict::Passed);
    let mut reasons: Vec<String> = device
        .attributes
        .iter()
        .filter(|a| a.verdict > Verdict::Passed)
        .map(|a| format!("{} {} ({}): {}", a.id, a.name, a.raw, a.note.as_deref().unwrap_or(a.verdict.as_str())))
        .collect();
    if device.self_assessment_passed == Some(false) || device.exit_status & (1 << 3) != 0 {
        verdict = Verdict::Failed;
        reasons.insert(0, "the drive's own health self-assessment failed".into());
    }
    if device.exit_status & (1 << 7) != 0 {
        verdict = verdict.max(Verdict::Warning);
        reasons.push("the self-test log has errors".into());
    }
    device.verdict = verdict;
    device.reasons = reasons;
}
