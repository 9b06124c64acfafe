//! Parsers for what the poll script prints of /proc, `df -P`, os-release and uname: pure
//! functions from text to numbers, each tolerant of the fields newer kernels add and strict
//! about the ones it needs.

use std::collections::BTreeMap;

use super::ParseError;

/// CPU time counters of the `cpu` line of /proc/stat, in USER_HZ ticks. Columns a kernel does
/// not print (steal before 2.6.11, guest before 2.6.24) are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

impl CpuTimes {
    /// Every tick once: guest and guest_nice are already counted in user and nice.
    pub fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub cpu: CpuTimes,
    /// The number of `cpuN` lines.
    pub cpus: u32,
    /// Boot time, seconds since the epoch: a change means the server rebooted.
    pub btime: Option<u64>,
}

fn number(field: &str, what: &'static str) -> Result<u64, ParseError> {
    field.parse().map_err(|_| ParseError::new(what, format!("`{field}` is not a count")))
}

pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    let mut stat = Stat::default();
    let mut seen_cpu = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let values: Vec<u64> = fields.map(|f| number(f, "/proc/stat")).collect::<Result<_, _>>()?;
                if values.len() < 4 {
                    return Err(ParseError::new("/proc/stat", "the cpu line has fewer than four columns"));
                }
                let at = |i: usize| values.get(i).copied().unwrap_or(0);
                stat.cpu = CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                    guest: at(8),
                    guest_nice: at(9),
                };
                seen_cpu = true;
            }
            Some(name) if name.starts_with("cpu") && name[3..].bytes().all(|b| b.is_ascii_digit()) => stat.cpus += 1,
            Some("btime") => stat.btime = fields.next().map(|f| number(f, "/proc/stat")).transpose()?,
            _ => {}
        }
    }
    if !seen_cpu {
        return Err(ParseError::new("/proc/stat", "no cpu line"));
    }
    Ok(stat)
}

/// /proc/meminfo in bytes, by key.
pub fn parse_meminfo(text: &str) -> Result<BTreeMap<String, u64>, ParseError> {
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, rest) =
            line.split_once(':').ok_or_else(|| ParseError::new("/proc/meminfo", format!("`{line}` has no colon")))?;
        let mut parts = rest.split_ascii_whitespace();
        let value = number(parts.next().unwrap_or(""), "/proc/meminfo")?;
        let scale = match parts.next() {
            Some("kB") => 1024,
            None => 1,
            Some(unit) => return Err(ParseError::new("/proc/meminfo", format!("unknown unit `{unit}`"))),
        };
        values.insert(key.trim().to_string(), value * scale);
    }
    Ok(values)
}

/// Memory used and available, from MemAvailable where the kernel has it (3.14 and later), else
/// free + buffers + cached (the estimate `free` made before it).
pub fn memory(meminfo: &BTreeMap<String, u64>) -> Result<unity_domain::monitoring::Memory, ParseError> {
    let get = |key: &str| meminfo.get(key).copied();
    let total = get("MemTotal").ok_or_else(|| ParseError::new("/proc/meminfo", "no MemTotal"))?;
    let cached = get("Cached").unwrap_or(0) + get("SReclaimable").unwrap_or(0);
    let available = match get("MemAvailable") {
        Some(available) => available,
        None => get("MemFree").unwrap_or(0) + get("Buffers").unwrap_or(0) + cached,
    }
    .min(total);
    let swap_total = get("SwapTotal").unwrap_or(0);
    Ok(unity_domain::monitoring::Memory {
        total,
        used: total - available,
        available,
        cached,
        swap_total,
        swap_used: swap_total.saturating_sub(get("SwapFree").unwrap_or(0)),
    })
}

/// 1, 5 and 15 minute load averages in hundredths.
pub fn parse_loadavg(text: &str) -> Result<[u32; 3], ParseError> {
    let mut fields = text.split_ascii_whitespace();
    let mut load = [0; 3];
    for slot in &mut load {
        let field = fields.next().ok_or_else(|| ParseError::new("/proc/loadavg", "fewer than three averages"))?;
        *slot =
            hundredths(field).ok_or_else(|| ParseError::new("/proc/loadavg", format!("`{field}` is not a load")))?;
    }
    Ok(load)
}

/// A percentage (`8.5`, `94.3%`) in hundredths, 0 to 10 000.
pub fn percent(text: &str) -> Option<u16> {
    hundredths(text.trim().trim_end_matches('%')).filter(|p| *p <= 10_000).map(|p| p as u16)
}

/// `12.34` as 1234, exactly (no float rounding).
fn hundredths(field: &str) -> Option<u32> {
    let (whole, fraction) = field.split_once('.').unwrap_or((field, ""));
    let mut digits = fraction.bytes().chain(std::iter::repeat(b'0')).take(2);
    let mut value: u32 = whole.parse().ok()?;
    for _ in 0..2 {
        let d = digits.next()?;
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    fraction.bytes().all(|b| b.is_ascii_digit()).then_some(value)
}

/// Seconds since boot, whole.
pub fn parse_uptime(text: &str) -> Result<u64, ParseError> {
    let field = text.split_ascii_whitespace().next().unwrap_or("");
    let whole = field.split('.').next().unwrap_or("");
    whole.parse().map_err(|_| ParseError::new("/proc/uptime", format!("`{field}` is not a duration")))
}

/// One interface's counters from /proc/net/dev.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

pub fn parse_net_dev(text: &str) -> Result<Vec<NetCounters>, ParseError> {
    let mut interfaces = Vec::new();
    // The two header lines have a `|`; every interface line has `name:` first.
    for line in text.lines().filter(|l| !l.contains('|') && !l.trim().is_empty()) {
        let (name, rest) =
            line.split_once(':').ok_or_else(|| ParseError::new("/proc/net/dev", format!("`{line}` has no name")))?;
        let values: Vec<u64> =
            rest.split_ascii_whitespace().map(|f| number(f, "/proc/net/dev")).collect::<Result<_, _>>()?;
        if values.len() < 16 {
            return Err(ParseError::new(
                "/proc/net/dev",
                format!("{} has {} counters, not 16", name.trim(), values.len()),
            ));
        }
        interfaces.push(NetCounters {
            name: name.trim().to_string(),
            rx_bytes: values[0],
            rx_packets: values[1],
            rx_errors: values[2],
            rx_drops: values[3],
            tx_bytes: values[8],
            tx_packets: values[9],
            tx_errors: values[10],
            tx_drops: values[11],
        });
    }
    Ok(interfaces)
}

/// One line of `df -P` (1024-byte blocks) or `df -Pi` (inodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DfRow {
    pub device: String,
    pub total: u64,
    pub used: u64,
    pub available: u64,
    pub mount: String,
}

/// `df -P` and `df -Pi`, also with `-T` (a type column). POSIX output keeps one filesystem per
/// line; a device name with spaces is not split, because the numbers are found from the right.
pub fn parse_df(text: &str) -> Result<Vec<DfRow>, ParseError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or_else(|| ParseError::new("df", "no header"))?;
    let typed = header.split_ascii_whitespace().nth(1) == Some("Type");
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        // device [type] total used available capacity mount…
        let Some(at) = fields.iter().position(|f| f.ends_with('%') || *f == "-").filter(|&i| i >= 4) else {
            return Err(ParseError::new("df", format!("`{line}` is not a df row")));
        };
        let numbers = &fields[at - 3..at];
        let parse = |f: &str| if f == "-" { Ok(0) } else { number(f, "df") };
        let device_end = if typed { at - 4 } else { at - 3 };
        rows.push(DfRow {
            device: fields[..device_end].join(" "),
            total: parse(numbers[0])?,
            used: parse(numbers[1])?,
            available: parse(numbers[2])?,
            mount: fields[at + 1..].join(" "),
        });
    }
    Ok(rows)
}

/// Mount point → filesystem type, from /proc/mounts (octal escapes such as `\040` decoded).
pub fn parse_mounts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let _device = fields.next()?;
            let mount = unescape_octal(fields.next()?);
            Some((mount, fields.next()?.to_string()))
        })
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// node_exporter's default exclusions: pseudo filesystems by type, and mount points under
/// /dev, /proc, /sys, /run/credentials and the container engines' storage.
pub fn excluded_filesystem(fstype: &str, mount: &str) -> bool {
    const TYPES: &[&str] = &[
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "procfs",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "erofs",
        "sysfs",
        "tracefs",
    ];
    const UNDER: &[&str] = &["/dev", "/proc", "/sys"];
    const BELOW: &[&str] = &["/run/credentials/", "/var/lib/docker/", "/var/lib/containers/storage/"];
    TYPES.contains(&fstype)
        || UNDER.iter().any(|p| mount == *p || mount.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
        || BELOW.iter().any(|p| mount.starts_with(p))
}

/// os-release's `KEY=value` lines, quotes removed.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_string(), value.replace("\\\"", "\"")))
        })
        .collect()
}
