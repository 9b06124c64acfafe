//! LVM: volume groups from `vgs` and logical volumes from `lvs`, both in their JSON report format
//! with sizes in bytes, judged by their attribute letters and thin pools' fill.
//!
//! `vg_attr`'s fourth letter `p` is a partial group (a physical volume is missing); `lv_attr`'s
//! ninth is a volume's health: `p` partial, `F` failed, `D` a thin pool out of data space, `M`
//! its metadata read-only (all failures), `r` refresh needed, `m` RAID mismatches, `X` unknown
//! (warnings). A thin pool's data or metadata at 90 % is a warning, at 98 % a failure: a full
//! thin pool stops every volume in it.

use serde::Deserialize;
use unity_domain::monitoring::{Pool, PoolKind, Verdict, Volume};

use super::{proc::percent, ParseError};

/// The `vgs` and `lvs` invocations of the poll script.
pub const VGS: &str =
    "vgs --reportformat json --units b --nosuffix -o vg_name,vg_attr,vg_size,vg_free,pv_count,lv_count,vg_missing_pv_count";
pub const LVS: &str =
    "lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_attr,lv_size,data_percent,metadata_percent,segtype,pool_lv";

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<T>,
}

#[derive(Deserialize)]
struct Vgs {
    #[serde(default)]
    vg: Vec<VgRow>,
}

#[derive(Deserialize)]
struct Lvs {
    #[serde(default)]
    lv: Vec<LvRow>,
}

#[derive(Deserialize)]
struct VgRow {
    vg_name: String,
    #[serde(default)]
    vg_attr: String,
    #[serde(default)]
    vg_size: String,
    #[serde(default)]
    vg_free: String,
    #[serde(default)]
    vg_missing_pv_count: String,
}

#[derive(Deserialize)]
struct LvRow {
    lv_name: String,
    vg_name: String,
    #[serde(default)]
    lv_attr: String,
    #[serde(default)]
    lv_size: String,
    #[serde(default)]
    data_percent: String,
    #[serde(default)]
    metadata_percent: String,
    #[serde(default)]
    segtype: String,
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The volume groups `vgs` reported, as pools (their volumes come from [`apply_lvs`]).
pub fn parse_vgs(json: &str) -> Result<Vec<Pool>, ParseError> {
    let report: Report<Vgs> =
        serde_json::from_str(json).map_err(|_| ParseError::new("vgs", "not the JSON report vgs writes"))?;
    let mut pools = Vec::new();
    for vg in report.report.into_iter().flat_map(|r| r.vg) {
        let size = number(&vg.vg_size);
        let free = number(&vg.vg_free);
        let mut pool = Pool {
            kind: PoolKind::Lvm,
            name: vg.vg_name,
            state: vg.vg_attr.clone(),
            size_bytes: size,
            allocated_bytes: size.zip(free).map(|(s, f)| s.saturating_sub(f)),
            free_bytes: free,
            scan: None,
            members: Vec::new(),
            volumes: Vec::new(),
            data_errors: 0,
            verdict: Verdict::Passed,
            reasons: Vec::new(),
        };
        let missing = number(&vg.vg_missing_pv_count).unwrap_or(0);
        if missing > 0 || vg.vg_attr.chars().nth(3) == Some('p') {
            flag(&mut pool, Verdict::Failed, format!("{missing} physical volume(s) missing: the group is partial"));
        }
        pools.push(pool);
    }
    Ok(pools)
}

/// Adds each logical volume to its group, and judges the groups.
pub fn apply_lvs(pools: &mut [Pool], json: &str) -> Result<(), ParseError> {
    let report: Report<Lvs> =
        serde_json::from_str(json).map_err(|_| ParseError::new("lvs", "not the JSON report lvs writes"))?;
    for lv in report.report.into_iter().flat_map(|r| r.lv) {
        let Some(pool) = pools.iter_mut().find(|p| p.name == lv.vg_name) else { continue };
        let data = percent(&lv.data_percent);
        let metadata = percent(&lv.metadata_percent);
        let health = match lv.lv_attr.chars().nth(8) {
            Some('p') => Some((Verdict::Failed, "is partial (a device is missing)")),
            Some('F') => Some((Verdict::Failed, "has failed")),
            Some('D') => Some((Verdict::Failed, "is out of data space")),
            Some('M') => Some((Verdict::Failed, "has its metadata read-only")),
            Some('r') => Some((Verdict::Warning, "needs a refresh")),
            Some('m') => Some((Verdict::Warning, "has RAID mismatches")),
            Some('X') => Some((Verdict::Warning, "is in an unknown state")),
            _ => None,
        };
        if let Some((verdict, why)) = health {
            flag(pool, verdict, format!("volume {} {why}", lv.lv_name));
        }
        if lv.segtype == "thin-pool" {
            for (what, fill) in [("data", data), ("metadata", metadata)] {
                let verdict = match fill {
                    Some(f) if f >= 9_800 => Verdict::Failed,
                    Some(f) if f >= 9_000 => Verdict::Warning,
                    _ => continue,
                };
                let full = fill.unwrap_or_default() / 100;
                flag(pool, verdict, format!("thin pool {} is {full}% full of {what}", lv.lv_name));
            }
        }
        pool.volumes.push(Volume {
            name: lv.lv_name,
            used_bytes: number(&lv.lv_size),
            available_bytes: None,
            snapshot_bytes: None,
            data_percent: data,
            metadata_percent: metadata,
        });
    }
    Ok(())
}

/// A reason the pool is not well, and the verdict it brings (the worst one stands).
pub(super) fn flag(pool: &mut Pool, verdict: Verdict, reason: String) {
    pool.verdict = pool.verdict.max(verdict);
    pool.reasons.push(reason);
}
