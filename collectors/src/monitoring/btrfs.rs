//! btrfs: each filesystem's `btrfs filesystem usage -b` (space, and a missing device) and
//! `btrfs device stats` (each device's error counters), as a pool named by its mount point.
//!
//! A missing device fails the pool (a raid1 runs degraded, a single profile has lost data);
//! error counters are cumulative since they were last reset, so any is a warning, and the
//! server's stream records a pool change each time they grow. Space: less than 5 % of the
//! devices unallocated and estimated free is a warning (btrfs's ENOSPC comes from allocation).

use std::collections::BTreeMap;

use unity_domain::monitoring::{Pool, PoolKind, PoolMember, Verdict};

use super::{lvm::flag, ParseError};

/// `Overall:` numbers of `btrfs filesystem usage -b`, by their label.
fn overall(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .skip_while(|l| l.trim() != "Overall:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (label, rest) = l.split_once(':')?;
            let number = rest.split_whitespace().next()?.parse().ok()?;
            Some((label.trim(), number))
        })
        .collect()
}

/// One filesystem, mounted at `mount`, from its usage and device stats (`None` where the
/// command failed: its counters or space are then unknown, not zero).
pub fn parse(mount: &str, usage: Option<&str>, stats: Option<&str>) -> Result<Pool, ParseError> {
    let numbers = usage.map(overall).unwrap_or_default();
    if usage.is_some() && numbers.is_empty() {
        return Err(ParseError::new("btrfs filesystem usage", "no Overall: section"));
    }
    let size = numbers.get("Device size").copied();
    let missing = numbers.get("Device missing").copied().unwrap_or(0);
    let unallocated = numbers.get("Device unallocated").copied();
    let mut pool = Pool {
        kind: PoolKind::Btrfs,
        name: mount.to_owned(),
        state: if missing > 0 { "degraded".into() } else { "ok".into() },
        size_bytes: size,
        allocated_bytes: numbers.get("Device allocated").copied(),
        free_bytes: numbers.get("Free (estimated)").copied(),
        scan: None,
        members: stats.map(members).transpose()?.unwrap_or_default(),
        volumes: Vec::new(),
        data_errors: 0,
        verdict: if usage.is_some() || stats.is_some() { Verdict::Passed } else { Verdict::Unknown },
        reasons: Vec::new(),
    };
    if missing > 0 {
        flag(&mut pool, Verdict::Failed, format!("a device of {missing} bytes is missing"));
    }
    for m in pool.members.clone() {
        let errors = m.read_errors + m.write_errors + m.checksum_errors;
        if errors > 0 {
            flag(&mut pool, Verdict::Warning, format!("{} has {errors} errors since its counters were reset", m.name));
        }
    }
    if let (Some(size), Some(unallocated), Some(free)) = (size, unallocated, pool.free_bytes) {
        if size > 0 && unallocated * 20 < size && free * 20 < size {
            flag(&mut pool, Verdict::Warning, "less than 5 % of its space is unallocated and free".into());
        }
    }
    Ok(pool)
}

/// `[/dev/sdb].read_io_errs 3` lines: reads and writes (write and flush errors) by device, and
/// corruption and generation errors as checksum errors.
fn members(text: &str) -> Result<Vec<PoolMember>, ParseError> {
    let mut members: Vec<PoolMember> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || {
            ParseError::new(
                "btrfs device stats",
                format!("unexpected line: {}", line.chars().take(80).collect::<String>()),
            )
        };
        let (key, value) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let (device, counter) = key.strip_prefix('[').and_then(|k| k.split_once("].")).ok_or_else(bad)?;
        let value: u64 = value.trim().parse().map_err(|_| bad())?;
        let member = match members.iter().position(|m| m.name == device) {
            Some(at) => &mut members[at],
            None => {
                members.push(PoolMember {
                    name: device.to_owned(),
                    depth: 1,
                    state: if device.starts_with("devid:") { "missing".into() } else { "present".into() },
                    read_errors: 0,
                    write_errors: 0,
                    checksum_errors: 0,
                    note: String::new(),
                });
                members.last_mut().expect("just pushed")
            }
        };
        match counter {
            "read_io_errs" => member.read_errors += value,
            "write_io_errs" | "flush_io_errs" => member.write_errors += value,
            "corruption_errs" | "generation_errs" => member.checksum_errors += value,
            _ => {}
        }
    }
    Ok(members)
}
