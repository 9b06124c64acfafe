//! Collection over an open SSH session: the poll (one exec of the poll script) and SMART (one
//! exec to find the devices, one to read them all). The session is the caller's: the
//! connection pool keeps one per server and every operation Unity does there shares it.

use std::collections::BTreeMap;

use super::{
    poll::{self, Reading},
    rates::Counters,
    smart::{self, Context, ScannedDevice},
    ParseError,
};
use crate::servers::ssh::{shell_quote, SshError, SshSession};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("the server's output could not be read: {0}")]
    Parse(#[from] ParseError),
}

/// One poll: the script's output read and parsed at `at_ms` (Unity's clock), compared with
/// `previous` where it may be.
pub async fn poll(
    session: &SshSession,
    at_ms: i64,
    previous: Option<&Counters>,
    max_gap_ms: i64,
) -> Result<Reading, CollectError> {
    let output = session.exec(&poll::script(), None).await?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(poll::parse(&text, at_ms, previous, max_gap_ms)?)
}

const SMART_HEADER: &str = "@@unity-smart 1";

/// Every device smartctl finds, read without waking a sleeping one (`-n standby`), each judged
/// with the context `context_for` gives its serial number. No smartctl on the server: none.
pub async fn smart(
    session: &SshSession,
    context_for: impl Fn(&str) -> Context,
) -> Result<Vec<(ScannedDevice, smart::Reading)>, CollectError> {
    let scan =
        session.exec("command -v smartctl >/dev/null 2>&1 || exit 127; smartctl --scan-open --json", None).await?;
    if scan.status == 127 {
        return Ok(Vec::new());
    }
    let devices = smart::parse_scan(&String::from_utf8_lossy(&scan.stdout))?;
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let mut script = format!("echo '{SMART_HEADER}'\n");
    for (n, device) in devices.iter().enumerate() {
        // smartctl's exit status is a bitmask of findings, not a failure: kept for the parser.
        script.push_str(&format!(
            "echo '@@{n}'; smartctl --json --xall -n standby -d {} {}; r=$?; echo; echo \"@@/ $r\"\n",
            shell_quote(&device.device_type),
            shell_quote(&device.name)
        ));
    }
    script.push_str("echo '@@end'\n");
    let output = session.exec(&script, None).await?;
    let sections = poll::sections_after(&String::from_utf8_lossy(&output.stdout), SMART_HEADER)?;
    let mut readings = Vec::new();
    for (n, device) in devices.into_iter().enumerate() {
        let text = sections.get(&n.to_string()).map(|s| s.text.as_str()).unwrap_or("");
        let context = smart::serial_of(text).map(|serial| context_for(&serial)).unwrap_or_default();
        let reading = match smart::parse_device(text, &context) {
            Ok(reading) => reading,
            Err(e) => smart::Reading::Unreadable(e.to_string()),
        };
        readings.push((device, reading));
    }
    Ok(readings)
}

/// The contexts of a server's known devices, by serial.
pub type Contexts = BTreeMap<String, Context>;
