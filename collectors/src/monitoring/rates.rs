//! Counter math: turning two readings of cumulative counters into shares and rates, and knowing
//! when two readings must not be compared (a reboot, a gap, a counter that was reset).

use std::collections::BTreeMap;

use unity_domain::monitoring::{Basis, CpuShares, InterfaceRates};

use super::proc::{CpuTimes, NetCounters};

/// What a poll leaves for the next one to compare with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Milliseconds on Unity's clock when the poll's output was read.
    pub at_ms: i64,
    /// The boot this reading belongs to (boot id, else btime).
    pub boot: String,
    pub cpu: CpuTimes,
    pub net: BTreeMap<String, NetCounters>,
}

/// Whether `current` may be compared with `previous`: same boot, time moved forward, and no
/// longer apart than `max_gap_ms` (a gap's average would hide what happened in it).
pub fn comparable(previous: &Counters, current: &Counters, max_gap_ms: i64) -> bool {
    let elapsed = current.at_ms - previous.at_ms;
    previous.boot == current.boot && elapsed > 0 && elapsed <= max_gap_ms
}

/// CPU shares between two readings of one boot; `None` if no tick passed or a counter went back.
pub fn cpu_shares(previous: &CpuTimes, current: &CpuTimes) -> Option<CpuShares> {
    let d = |a: u64, b: u64| b.checked_sub(a);
    let user = d(previous.user, current.user)?;
    let nice = d(previous.nice, current.nice)?;
    let system = d(previous.system, current.system)?;
    let idle = d(previous.idle, current.idle)?;
    // iowait may go backwards on some kernels (it is per-CPU and estimated): count it as 0.
    let iowait = d(previous.iowait, current.iowait).unwrap_or(0);
    let irq = d(previous.irq, current.irq)?;
    let softirq = d(previous.softirq, current.softirq)?;
    let steal = d(previous.steal, current.steal)?;
    let guest = d(previous.guest + previous.guest_nice, current.guest + current.guest_nice)?;
    let total = user + nice + system + idle + iowait + irq + softirq + steal;
    if total == 0 {
        return None;
    }
    let share = |part: u64| -> Basis { ((part as u128 * 10_000 + total as u128 / 2) / total as u128) as Basis };
    Some(CpuShares {
        user: share(user),
        nice: share(nice),
        system: share(system),
        iowait: share(iowait),
        irq: share(irq),
        softirq: share(softirq),
        steal: share(steal),
        guest: share(guest.min(user + nice)),
        idle: share(idle),
    })
}

/// The increase of a counter that may be 32 bits wide (32-bit kernels wrap /proc/net/dev at
/// 2^32): a decrease from a value that fits in 32 bits is a wrap when the wrapped distance is
/// under 2^31; any other decrease is a reset (an interface re-created, a driver reloaded).
pub fn counter_increase(previous: u64, current: u64) -> Option<u64> {
    if current >= previous {
        return Some(current - previous);
    }
    const WRAP: u64 = 1 << 32;
    (previous < WRAP).then(|| WRAP - previous + current).filter(|d| *d < WRAP / 2)
}

/// Per-second rates for each interface of `current`, compared with the same interface in
/// `previous` (when there is a comparable previous reading).
pub fn interface_rates(previous: Option<&Counters>, current: &Counters) -> Vec<InterfaceRates> {
    current
        .net
        .values()
        .map(|now| {
            let before = previous.and_then(|p| p.net.get(&now.name).map(|b| (b, current.at_ms - p.at_ms)));
            let mut rates = InterfaceRates { name: now.name.clone(), ..InterfaceRates::default() };
            if let Some((before, elapsed_ms)) = before {
                let per_second = |a: u64, b: u64| {
                    counter_increase(a, b)
                        .map(|d| ((d as u128 * 1000 + elapsed_ms as u128 / 2) / elapsed_ms as u128) as u64)
                };
                rates.rx_bytes = per_second(before.rx_bytes, now.rx_bytes);
                rates.tx_bytes = per_second(before.tx_bytes, now.tx_bytes);
                rates.rx_packets = per_second(before.rx_packets, now.rx_packets);
                rates.tx_packets = per_second(before.tx_packets, now.tx_packets);
                rates.errors = counter_increase(before.rx_errors, now.rx_errors)
                    .zip(counter_increase(before.tx_errors, now.tx_errors))
                    .map(|(r, t)| r + t);
                rates.drops = counter_increase(before.rx_drops, now.rx_drops)
                    .zip(counter_increase(before.tx_drops, now.tx_drops))
                    .map(|(r, t)| r + t);
            }
            rates
        })
        .collect()
}
