//! `/metrics/fleet`: every monitored server's latest sample in Prometheus text format, so an
//! existing Prometheus and Grafana chart agentless hosts with no exporter on them. Needs a
//! bearer token (an API key of any role): host names, mounts and interfaces are the fleet's
//! business, not the network's.

use std::{collections::HashMap, fmt::Write};

use unity_domain::monitoring::HostSample;
use unity_projections::{monitoring as read, servers};

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text of every monitored server's latest sample.
pub async fn exposition(pool: &sqlx::PgPool) -> Result<String, sqlx::Error> {
    let mut names = HashMap::new();
    let mut after = None;
    loop {
        let page = servers::servers(pool, after, 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.server_id);
        names.extend(page.into_iter().map(|s| (s.server_id, s.name)));
    }
    // One family at a time, as the format wants: (name, help, type, lines).
    let mut families: Vec<(&str, &str, &str, String)> = vec![
        (
            "unity_host_up",
            "1 when the server's last poll succeeded, 0 when it is failing or unreachable",
            "gauge",
            String::new(),
        ),
        ("unity_host_last_sample_timestamp_seconds", "When the latest sample was read", "gauge", String::new()),
        ("unity_host_uptime_seconds", "Seconds since the server booted", "gauge", String::new()),
        ("unity_host_cpu_ratio", "Share of all CPUs' time by mode since the previous poll", "gauge", String::new()),
        (
            "unity_host_memory_bytes",
            "Memory by kind (total, used, available, cached, swap_total, swap_used)",
            "gauge",
            String::new(),
        ),
        ("unity_host_load", "Load average over 1, 5 and 15 minutes", "gauge", String::new()),
        ("unity_host_filesystem_bytes", "Filesystem size, used and available", "gauge", String::new()),
        (
            "unity_host_network_bytes_per_second",
            "Interface traffic per second since the previous poll",
            "gauge",
            String::new(),
        ),
    ];
    for server in read::monitored_servers(pool).await? {
        let Some(name) = names.get(&server.server_id) else { continue };
        let labels = format!("server_id=\"{}\",server=\"{}\"", server.server_id, escape(name));
        let up = i32::from(server.status == "OK");
        let _ = writeln!(families[0].3, "unity_host_up{{{labels}}} {up}");
        let (Some(at), Some(sample)) = (server.last_sample_at, server.last_sample) else { continue };
        let Ok(sample) = serde_json::from_value::<HostSample>(sample) else { continue };
        let _ = writeln!(families[1].3, "unity_host_last_sample_timestamp_seconds{{{labels}}} {}", at.timestamp());
        let _ = writeln!(families[2].3, "unity_host_uptime_seconds{{{labels}}} {}", sample.uptime_secs);
        if let Some(cpu) = sample.cpu {
            for (mode, share) in [
                ("user", cpu.user),
                ("nice", cpu.nice),
                ("system", cpu.system),
                ("iowait", cpu.iowait),
                ("irq", cpu.irq),
                ("softirq", cpu.softirq),
                ("steal", cpu.steal),
                ("guest", cpu.guest),
                ("idle", cpu.idle),
            ] {
                let _ = writeln!(
                    families[3].3,
                    "unity_host_cpu_ratio{{{labels},mode=\"{mode}\"}} {}",
                    f64::from(share) / 10_000.0
                );
            }
        }
        let m = sample.memory;
        for (kind, bytes) in [
            ("total", m.total),
            ("used", m.used),
            ("available", m.available),
            ("cached", m.cached),
            ("swap_total", m.swap_total),
            ("swap_used", m.swap_used),
        ] {
            let _ = writeln!(families[4].3, "unity_host_memory_bytes{{{labels},kind=\"{kind}\"}} {bytes}");
        }
        for (period, load) in ["1m", "5m", "15m"].iter().zip(sample.load) {
            let _ =
                writeln!(families[5].3, "unity_host_load{{{labels},period=\"{period}\"}} {}", f64::from(load) / 100.0);
        }
        for fs in &sample.filesystems {
            let mount = escape(&fs.mount);
            for (kind, bytes) in [("size", fs.size), ("used", fs.used), ("available", fs.available)] {
                let _ = writeln!(
                    families[6].3,
                    "unity_host_filesystem_bytes{{{labels},mount=\"{mount}\",kind=\"{kind}\"}} {bytes}"
                );
            }
        }
        for interface in &sample.interfaces {
            let device = escape(&interface.name);
            for (direction, rate) in [("receive", interface.rx_bytes), ("transmit", interface.tx_bytes)] {
                if let Some(rate) = rate {
                    let _ = writeln!(families[7].3, "unity_host_network_bytes_per_second{{{labels},interface=\"{device}\",direction=\"{direction}\"}} {rate}");
                }
            }
        }
    }
    let mut out = String::new();
    for (name, help, kind, lines) in families {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{lines}");
    }
    Ok(out)
}
