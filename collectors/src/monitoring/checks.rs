//! Running a check over an SSH session and reading its answer the Nagios plugin way: the exit
//! status is the verdict, the first line the text, and what follows `|` on any line performance
//! data (`'label'=value[UOM];[warn];[crit];[min];[max]`, space separated).

use unity_domain::monitoring::{CheckResult, CheckStatus, PerfValue, MAX_OUTPUT_LEN};

use crate::servers::ssh::{shell_quote, SshError, SshSession};

/// How long one check may run before it is killed (and reported UNKNOWN).
pub const CHECK_TIMEOUT_SECS: u32 = 10;

/// Runs `command` with `sh -c` under `timeout`, and reads its answer.
pub async fn run(session: &SshSession, command: &str) -> Result<CheckResult, SshError> {
    let script = format!("timeout -s KILL {CHECK_TIMEOUT_SECS} sh -c {} 2>&1", shell_quote(command));
    let output = session.exec(&script, None).await?;
    Ok(result(output.status, &String::from_utf8_lossy(&output.stdout)))
}

/// A plugin's answer: its exit status and output. `timeout` kills with status 137; a shell
/// that cannot find the plugin says 127.
pub fn result(status: u32, output: &str) -> CheckResult {
    let (text, perfdata) = parse_output(output);
    let (text, exit) = match status {
        137 => (format!("timed out after {CHECK_TIMEOUT_SECS} s {text}").trim().to_owned(), None),
        127 => (format!("not found: {text}"), Some(127)),
        status => (text, Some(status)),
    };
    CheckResult { status: CheckStatus::from_exit(exit.unwrap_or(3)), exit, output: text, perfdata }
}

/// The text (the first line's, then the long output's, without performance data, cut to
/// [`MAX_OUTPUT_LEN`] bytes) and the performance data of every line.
pub fn parse_output(output: &str) -> (String, Vec<PerfValue>) {
    let mut text = String::new();
    let mut perfdata = Vec::new();
    for (n, line) in output.lines().enumerate() {
        let (words, perf) = line.split_once('|').unwrap_or((line, ""));
        let words = words.trim_end();
        if !words.is_empty() {
            if n > 0 {
                text.push('\n');
            }
            text.push_str(words);
        }
        perfdata.extend(parse_perfdata(perf));
    }
    let mut text = text.trim().to_owned();
    if text.len() > MAX_OUTPUT_LEN {
        let mut end = MAX_OUTPUT_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    (text, perfdata)
}

/// Performance data: `label=value[UOM];warn;crit;min;max` items separated by spaces, a label in
/// single quotes when it has spaces (`''` for a quote inside). Items that do not parse are
/// skipped, as Nagios does.
pub fn parse_perfdata(text: &str) -> Vec<PerfValue> {
    let mut values = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        label.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    label.push(c);
                }
            }
            match end {
                Some(end) => (label, &quoted[end..]),
                None => break,
            }
        } else {
            match rest.find('=') {
                Some(at) => (rest[..at].to_owned(), &rest[at..]),
                None => break,
            }
        };
        let Some(after) = after.strip_prefix('=') else { break };
        let item_end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (item, next) = after.split_at(item_end);
        rest = next.trim_start();
        if let Some(value) = perf_value(label, item) {
            values.push(value);
        }
    }
    values
}

fn perf_value(label: String, item: &str) -> Option<PerfValue> {
    if label.trim().is_empty() {
        return None;
    }
    let mut fields = item.split(';');
    let first = fields.next()?;
    // The plugin guidelines' units (s ms us % B KB MB GB TB c) never start with `e`, so an `e`
    // belongs to the number's exponent.
    let number_end =
        first.find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))).unwrap_or(first.len());
    let (number, uom) = first.split_at(number_end);
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite())?;
    let threshold = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let bound = |s: Option<&str>| s.and_then(|s| s.trim().parse::<f64>().ok()).filter(|v| v.is_finite());
    Some(PerfValue {
        label: label.trim().to_owned(),
        value,
        uom: uom.to_owned(),
        warn: threshold(fields.next()),
        crit: threshold(fields.next()),
        min: bound(fields.next()),
        max: bound(fields.next()),
    })
}
