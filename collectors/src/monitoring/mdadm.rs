//! md arrays: /proc/mdstat for every array in one read, `mdadm --detail` for the members'
//! states and the array's own word for itself, and the verdict: a `check` is routine, a resync
//! or recovery is a warning, a failed member, a degraded or inactive array is a failure.

use unity_domain::monitoring::{Array, ArrayMember, Verdict};

use super::ParseError;

/// Every array in /proc/mdstat.
pub fn parse_mdstat(text: &str) -> Result<Vec<Array>, ParseError> {
    let mut arrays: Vec<Array> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("Personalities") || trimmed.starts_with("unused devices") {
            continue;
        }
        if let Some((name, rest)) = line.split_once(" : ").filter(|(n, _)| !n.starts_with(char::is_whitespace)) {
            arrays.push(array_line(name.trim(), rest)?);
            continue;
        }
        let array = arrays
            .last_mut()
            .ok_or_else(|| ParseError::new("/proc/mdstat", format!("`{trimmed}` before any array")))?;
        if let Some(counts) = status_counts(trimmed) {
            array.raid_devices = Some(counts.0);
            array.degraded = counts.0.saturating_sub(counts.1);
        }
        for action in ["recovery", "resync", "reshape", "check", "repair"] {
            if let Some(rest) = trimmed.split_once(action).map(|(_, r)| r.trim_start()) {
                if let Some(value) = rest.strip_prefix('=') {
                    let value = value.trim_start();
                    array.sync_action = Some(action.to_string());
                    // `resync=DELAYED` or `=PENDING`: queued, not running, no progress yet.
                    array.sync_progress = value.split('%').next().and_then(super::proc::percent);
                    if value.starts_with("DELAYED") || value.starts_with("PENDING") {
                        array.sync_action = Some(format!("{action} {}", value.to_ascii_lowercase()));
                    }
                    break;
                }
            }
        }
    }
    Ok(arrays)
}

/// `active raid1 sda1[0] sdb1[1](F)`, `inactive sdb[2](S)`, `active (auto-read-only) raid1 …`.
fn array_line(name: &str, rest: &str) -> Result<Array, ParseError> {
    let mut words = rest.split_ascii_whitespace().peekable();
    let mut state =
        words.next().ok_or_else(|| ParseError::new("/proc/mdstat", format!("{name} has no state")))?.to_string();
    while let Some(flag) = words.peek().filter(|w| w.starts_with('(')) {
        state = format!("{state} {flag}");
        words.next();
    }
    let level = match words.peek() {
        Some(w) if !w.contains('[') => words.next().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    let members = words
        .map(|word| {
            let device = word.split('[').next().unwrap_or(word).to_string();
            let state = match word.rsplit_once(']').map(|(_, flags)| flags) {
                Some(flags) if flags.contains("(F)") => "faulty",
                Some(flags) if flags.contains("(S)") => "spare",
                Some(flags) if flags.contains("(W)") => "active sync writemostly",
                Some(flags) if flags.contains("(R)") => "replacement",
                _ => "active sync",
            };
            ArrayMember { device, state: state.to_string() }
        })
        .collect();
    Ok(Array {
        name: name.to_string(),
        level,
        state,
        raid_devices: None,
        members,
        degraded: 0,
        sync_action: None,
        sync_progress: None,
        mismatch_count: None,
        verdict: Verdict::Unknown,
        reasons: Vec::new(),
    })
}

/// `[8/7]` from a blocks line: (raid devices, working devices).
fn status_counts(line: &str) -> Option<(u32, u32)> {
    line.split_ascii_whitespace().find_map(|word| {
        let inner = word.strip_prefix('[')?.strip_suffix(']')?;
        let (total, working) = inner.split_once('/')?;
        Some((total.parse().ok()?, working.parse().ok()?))
    })
}

/// `mdadm --detail /dev/mdX` folded into the array mdstat described: the state in mdadm's words,
/// each member's state, the raid device count and a sync's progress.
pub fn apply_detail(array: &mut Array, text: &str) -> Result<(), ParseError> {
    let mut in_table = false;
    let mut members = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("Number") && trimmed.contains("RaidDevice") {
            in_table = true;
            continue;
        }
        if in_table {
            let fields: Vec<&str> = trimmed.split_ascii_whitespace().collect();
            // Number Major Minor RaidDevice [State words…] /dev/… — an empty slot has no device.
            if fields.len() >= 5 {
                let (state, device) = match fields.last() {
                    Some(d) if d.starts_with('/') => {
                        (fields[4..fields.len() - 1].join(" "), d.trim_start_matches("/dev/"))
                    }
                    _ => (fields[4..].join(" "), ""),
                };
                members.push(ArrayMember {
                    device: device.to_string(),
                    state: if state.is_empty() { "inactive".into() } else { state },
                });
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(" : ") else { continue };
        let value = value.trim();
        match key.trim() {
            "Raid Level" => array.level = value.to_string(),
            "State" => array.state = value.to_string(),
            "Raid Devices" => array.raid_devices = value.parse().ok(),
            "Active Devices" => {
                if let (Some(total), Ok(active)) = (array.raid_devices, value.parse::<u32>()) {
                    array.degraded = total.saturating_sub(active);
                }
            }
            status @ ("Rebuild Status" | "Resync Status" | "Reshape Status" | "Check Status") => {
                array.sync_progress = value.split('%').next().and_then(super::proc::percent);
                let action = match status {
                    "Rebuild Status" => "recovery",
                    "Resync Status" => "resync",
                    "Reshape Status" => "reshape",
                    _ => "check",
                };
                array.sync_action.get_or_insert_with(|| action.to_string());
            }
            _ => {}
        }
    }
    if members.is_empty() && !text.contains("RaidDevice") {
        return Err(ParseError::new("mdadm --detail", "no device table"));
    }
    array.members = members;
    Ok(())
}

/// The verdict and its reasons.
pub fn judge(array: &mut Array) {
    let mut reasons = Vec::new();
    let mut verdict = Verdict::Passed;
    let state = array.state.to_ascii_lowercase();
    if state.starts_with("inactive") {
        verdict = Verdict::Failed;
        reasons.push("the array is inactive".to_string());
    }
    let faulty = array.members.iter().filter(|m| m.state.contains("faulty")).count();
    let removed = array.members.iter().filter(|m| m.state == "removed").count() as u32;
    array.degraded = array.degraded.max(removed);
    if faulty > 0 {
        verdict = Verdict::Failed;
        reasons.push(format!("{faulty} failed member{}", if faulty == 1 { "" } else { "s" }));
    }
    if array.degraded > 0 || state.contains("degraded") {
        verdict = Verdict::Failed;
        reasons.push(format!(
            "degraded: {} of {} devices missing",
            array.degraded.max(1),
            array.raid_devices.unwrap_or(0)
        ));
    }
    match array.sync_action.as_deref() {
        // A check (or repair) is maintenance: only a mismatch it finds is news.
        Some(a) if a.starts_with("check") || a.starts_with("repair") => {}
        Some(action) => {
            verdict = verdict.max(Verdict::Warning);
            let progress = array.sync_progress.map(|p| format!(" at {}.{:02} %", p / 100, p % 100)).unwrap_or_default();
            reasons.push(format!("{action}{progress}"));
        }
        None if state.contains("recovering") || state.contains("resyncing") || state.contains("reshaping") => {
            verdict = verdict.max(Verdict::Warning);
            reasons.push(array.state.clone());
        }
        None => {}
    }
    if let Some(mismatches) = array.mismatch_count.filter(|m| *m > 0) {
        verdict = verdict.max(Verdict::Warning);
        reasons.push(format!("{mismatches} mismatched sectors found by the last check"));
    }
    array.verdict = verdict;
    array.reasons = reasons;
}
