//! Checks: Nagios-compatible plugins (or any executable) that Unity runs on servers over SSH, so
//! the monitoring-plugins ecosystem works with nothing installed by Unity. A check is its own
//! aggregate (the `monitoring_check` stream), aimed at one server or every server with a tag.
//! Each run is a sample (`CheckRan` on the server's day of `host_samples`); a change of status
//! is recorded once on the server's `server_monitoring` stream.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{decider::Decider, Refusal, Refuse};

pub const MIN_CHECK_INTERVAL_SECS: u32 = 15;
pub const MAX_CHECK_INTERVAL_SECS: u32 = 86_400;
pub const DEFAULT_CHECK_INTERVAL_SECS: u32 = 300;
pub const MAX_COMMAND_LEN: usize = 2_000;
/// What is kept of a plugin's output (its first line, as Nagios shows it, and the long output).
pub const MAX_OUTPUT_LEN: usize = 1_000;

/// A plugin's verdict, by its exit status (the Nagios plugin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckStatus {
    Ok,
    Warning,
    Critical,
    /// Exit status 3, any other status, a plugin that was not found or timed out.
    Unknown,
}

impl CheckStatus {
    pub fn from_exit(status: u32) -> CheckStatus {
        match status {
            0 => CheckStatus::Ok,
            1 => CheckStatus::Warning,
            2 => CheckStatus::Critical,
            _ => CheckStatus::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK",
            CheckStatus::Warning => "WARNING",
            CheckStatus::Critical => "CRITICAL",
            CheckStatus::Unknown => "UNKNOWN",
        }
    }
}

/// Which servers a check runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckTarget {
    Server(Uuid),
    /// Every server with this tag, now and later.
    Tag(String),
}

impl CheckTarget {
    pub fn applies_to(&self, server_id: Uuid, tags: &[String]) -> bool {
        match self {
            CheckTarget::Server(id) => *id == server_id,
            CheckTarget::Tag(tag) => tags.contains(tag),
        }
    }
}

/// One value of a plugin's performance data (`'label'=value[UOM];[warn];[crit];[min];[max]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerfValue {
    pub label: String,
    pub value: f64,
    /// `s`, `ms`, `us`, `%`, `B`, `KB`, `MB`, `GB`, `TB`, `c` (a counter), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uom: String,
    /// Thresholds as the plugin wrote them (Nagios ranges such as `10:`, `@5:10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// One run of a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub status: CheckStatus,
    /// The plugin's exit status (`None`: it did not exit, it was killed at its timeout).
    pub exit: Option<u32>,
    /// The output without its performance data, at most [`MAX_OUTPUT_LEN`] bytes.
    pub output: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perfdata: Vec<PerfValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDefinition {
    pub check_id: Uuid,
    pub name: String,
    pub target: CheckTarget,
    /// Run by `sh -c` as the server's login user.
    pub command: String,
    pub interval_secs: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum CheckEvent {
    CheckCreated(CheckDefinition),
    CheckDeleted { check_id: Uuid },
}

crate::domain_event!(CheckEvent, "monitoring_check", [CheckCreated, CheckDeleted]);

#[derive(Clone, Debug)]
pub enum CheckCommand {
    Create(CheckDefinition),
    Delete,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckState {
    pub definition: Option<CheckDefinition>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("a check needs a name")]
    NoName,
    #[error("a check needs a command")]
    NoCommand,
    #[error("the command is longer than {MAX_COMMAND_LEN} characters")]
    CommandTooLong,
    #[error("the command must be one line without NUL characters")]
    CommandNotOneLine,
    #[error("the interval must be between {MIN_CHECK_INTERVAL_SECS} and {MAX_CHECK_INTERVAL_SECS} seconds")]
    IntervalOutOfRange,
    #[error("a tag must not be empty")]
    EmptyTag,
    #[error("this check exists already")]
    Exists,
    #[error("no such check")]
    NotFound,
}

impl Refuse for CheckError {
    fn refusal(&self) -> Refusal {
        match self {
            CheckError::Exists => Refusal::Conflict,
            CheckError::NotFound => Refusal::NotFound,
            _ => Refusal::Invalid,
        }
    }
}

pub struct Check;

impl Decider for Check {
    type Command = CheckCommand;
    type Event = CheckEvent;
    type State = CheckState;
    type Error = CheckError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        match command {
            CheckCommand::Create(definition) => {
                if state.definition.is_some() {
                    return Err(CheckError::Exists);
                }
                if definition.name.trim().is_empty() {
                    return Err(CheckError::NoName);
                }
                let command = definition.command.trim();
                if command.is_empty() {
                    return Err(CheckError::NoCommand);
                }
                if command.chars().count() > MAX_COMMAND_LEN {
                    return Err(CheckError::CommandTooLong);
                }
                if command.contains(['\n', '\r', '\0']) {
                    return Err(CheckError::CommandNotOneLine);
                }
                if !(MIN_CHECK_INTERVAL_SECS..=MAX_CHECK_INTERVAL_SECS).contains(&definition.interval_secs) {
                    return Err(CheckError::IntervalOutOfRange);
                }
                if matches!(&definition.target, CheckTarget::Tag(tag) if tag.trim().is_empty()) {
                    return Err(CheckError::EmptyTag);
                }
                Ok(vec![CheckEvent::CheckCreated(CheckDefinition {
                    name: definition.name.trim().to_owned(),
                    command: command.to_owned(),
                    ..definition.clone()
                })])
            }
            CheckCommand::Delete => match &state.definition {
                Some(definition) if !state.deleted => {
                    Ok(vec![CheckEvent::CheckDeleted { check_id: definition.check_id }])
                }
                _ => Err(CheckError::NotFound),
            },
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        match event {
            CheckEvent::CheckCreated(definition) => state.definition = Some(definition.clone()),
            CheckEvent::CheckDeleted { .. } => state.deleted = true,
        }
        state
    }
}
