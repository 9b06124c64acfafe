//! ZFS: `zpool status -p` for health, scans and per-vdev error counters, `zpool list -Hp` for
//! capacity, `zfs list -Hp` for datasets. Old Solaris-era and OpenZFS 2.x wordings both parse.

use unity_domain::monitoring::{Pool, PoolKind, PoolMember, Scan, Verdict, Volume};

use super::ParseError;

/// The columns the script asks `zpool list` for.
pub const ZPOOL_LIST: &str = "zpool list -Hp -o name,health,size,alloc,free,fragmentation,capacity,dedupratio";
/// The columns the script asks `zfs list` for.
pub const ZFS_LIST: &str = "zfs list -Hp -t filesystem,volume -o name,avail,used,usedsnap,usedds";

fn empty_pool(name: &str) -> Pool {
    Pool {
        kind: PoolKind::Zfs,
        name: name.to_string(),
        state: String::new(),
        size_bytes: None,
        allocated_bytes: None,
        free_bytes: None,
        scan: None,
        members: Vec::new(),
        volumes: Vec::new(),
        data_errors: 0,
        verdict: Verdict::Unknown,
        reasons: Vec::new(),
    }
}

/// Every pool in `zpool status` output.
pub fn parse_status(text: &str) -> Result<Vec<Pool>, ParseError> {
    let mut pools: Vec<Pool> = Vec::new();
    let mut field = "";
    let mut config_indent: Option<usize> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((key, value)) = key_value(line) {
            field = key;
            config_indent = None;
            match key {
                "pool" => pools.push(empty_pool(value)),
                _ => {
                    let pool = pools
                        .last_mut()
                        .ok_or_else(|| ParseError::new("zpool status", format!("`{key}:` before any pool")))?;
                    match key {
                        "state" => pool.state = value.to_string(),
                        "scan" | "scrub" => pool.scan = scan_line(value),
                        "errors" => pool.data_errors = data_errors(value),
                        _ => {}
                    }
                }
            }
            continue;
        }
        let Some(pool) = pools.last_mut() else { continue };
        match field {
            // A scan in progress continues on indented lines: `… 12.34% done, …`.
            "scan" | "scrub" => {
                if let Some(scan) = pool.scan.as_mut().filter(|s| s.running) {
                    if let Some(done) = trimmed.split("% done").next().filter(|_| trimmed.contains("% done")) {
                        scan.progress = done.rsplit([' ', ',']).next().and_then(super::proc::percent);
                    }
                }
            }
            "config" if !trimmed.is_empty() => {
                let indent = line.len() - line.trim_start().len();
                let fields: Vec<&str> = trimmed.split_ascii_whitespace().collect();
                if fields.first() == Some(&"NAME") {
                    config_indent = Some(indent);
                    continue;
                }
                let Some(base) = config_indent else { continue };
                // `spares`, `logs`, `cache` headings, and AVAIL spares with no counters.
                let counters =
                    fields.get(2..5).and_then(|c| c.iter().map(|v| v.parse::<u64>().ok()).collect::<Option<Vec<_>>>());
                let depth = (indent.saturating_sub(base) / 2) as u8;
                match counters {
                    Some(c) => pool.members.push(PoolMember {
                        name: fields[0].to_string(),
                        depth,
                        state: fields[1].to_string(),
                        read_errors: c[0],
                        write_errors: c[1],
                        checksum_errors: c[2],
                        note: fields[5..].join(" "),
                    }),
                    None if fields.len() >= 2 => pool.members.push(PoolMember {
                        name: fields[0].to_string(),
                        depth,
                        state: fields[1].to_string(),
                        read_errors: 0,
                        write_errors: 0,
                        checksum_errors: 0,
                        note: fields[2..].join(" "),
                    }),
                    None => {}
                }
            }
            _ => {}
        }
    }
    if pools.is_empty() && !text.trim().is_empty() && !text.contains("no pools available") {
        return Err(ParseError::new("zpool status", "no `pool:` line"));
    }
    Ok(pools)
}

/// `  pool: tank` → ("pool", "tank"); only for the keys zpool status prints at the left margin.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim();
    const KEYS: &[&str] = &["pool", "state", "status", "action", "see", "scan", "scrub", "config", "errors", "remove"];
    (KEYS.contains(&key) && !line.starts_with('\t') && line.len() - line.trim_start().len() <= 8)
        .then(|| (key, value.trim()))
}

fn scan_line(value: &str) -> Option<Scan> {
    if value.starts_with("none requested") || value.is_empty() {
        return None;
    }
    let kind = if value.contains("resilver") { "resilver" } else { "scrub" };
    let running = value.contains("in progress");
    // `… with 3 errors on …`
    let errors = value
        .split(" with ")
        .nth(1)
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // A finished scan is 100 %; a running one's progress is on its next line; a canceled one has none.
    let progress = (!running && !value.contains("canceled")).then_some(10_000);
    Some(Scan { kind: kind.to_string(), running, progress, errors })
}

fn data_errors(value: &str) -> u64 {
    if value.starts_with("No known data errors") {
        0
    } else {
        // `1 data errors, use '-v' for a list`; `Permanent errors have been detected …` (count
        // unknown without -v: at least one).
        value.split_ascii_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(1)
    }
}

fn bytes(field: &str) -> Option<u64> {
    field.parse().ok()
}

/// Capacity from `zpool list -Hp -o name,health,size,alloc,free,…` folded into the pools of
/// `zpool status` (a pool listed but not in the status output is added).
pub fn apply_list(pools: &mut Vec<Pool>, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let Some(name) = fields.first() else { continue };
        if !pools.iter().any(|p| p.name == *name) {
            pools.push(empty_pool(name));
        }
        let Some(pool) = pools.iter_mut().find(|p| p.name == *name) else { continue };
        if pool.state.is_empty() {
            pool.state = fields.get(1).unwrap_or(&"").to_string();
        }
        pool.size_bytes = fields.get(2).and_then(|f| bytes(f));
        pool.allocated_bytes = fields.get(3).and_then(|f| bytes(f));
        pool.free_bytes = fields.get(4).and_then(|f| bytes(f));
    }
}

/// Datasets from `zfs list -Hp -o name,avail,used,usedsnap,usedds`, each under its pool.
pub fn apply_datasets(pools: &mut [Pool], text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let name = fields[0];
        let pool_name = name.split('/').next().unwrap_or(name);
        if let Some(pool) = pools.iter_mut().find(|p| p.name == pool_name) {
            pool.volumes.push(Volume {
                name: name.to_string(),
                available_bytes: fields.get(1).and_then(|f| bytes(f)),
                used_bytes: fields.get(2).and_then(|f| bytes(f)),
                snapshot_bytes: fields.get(3).and_then(|f| bytes(f)),
                data_percent: None,
                metadata_percent: None,
            });
        }
    }
}

/// ONLINE with no errors passes; a scrub or resilver running, or error counters above zero, is a
/// warning; DEGRADED, FAULTED, UNAVAIL, SUSPENDED or data errors are failures.
pub fn judge(pool: &mut Pool) {
    let mut verdict = Verdict::Passed;
    let mut reasons = Vec::new();
    match pool.state.as_str() {
        "ONLINE" => {}
        "" => verdict = Verdict::Unknown,
        state => {
            verdict = Verdict::Failed;
            reasons.push(format!("the pool is {state}"));
        }
    }
    for member in pool.members.iter().skip(1) {
        if member.state != "ONLINE" && member.state != "AVAIL" && member.state != "INUSE" {
            verdict = verdict.max(Verdict::Warning);
            reasons.push(format!("{} is {}", member.name, member.state));
        }
    }
    let errors: u64 = pool.members.iter().map(|m| m.read_errors + m.write_errors + m.checksum_errors).sum();
    if errors > 0 {
        verdict = verdict.max(Verdict::Warning);
        reasons.push(format!("{errors} read, write or checksum errors on its devices"));
    }
    if pool.data_errors > 0 {
        verdict = Verdict::Failed;
        reasons.push(format!("{} data errors", pool.data_errors));
    }
    if let Some(scan) = pool.scan.as_ref() {
        if scan.running && scan.kind == "resilver" {
            verdict = verdict.max(Verdict::Warning);
            reasons.push("resilvering".to_string());
        }
        if scan.errors > 0 {
            verdict = verdict.max(Verdict::Warning);
            reasons.push(format!("the last {} found {} errors", scan.kind, scan.errors));
        }
    }
    pool.verdict = verdict;
    pool.reasons = reasons;
}
