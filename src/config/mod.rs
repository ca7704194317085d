//! The config file: TOML as `docs/interface.md` fixes it, extended with tuning keys.
//!
//! Loading is three steps, each with errors that name the file and the key: parse (unknown keys
//! are errors, so typos do not pass silently), validate (values that parse but make no sense),
//! resolve (read password files). `face2mqtt check` runs all three.
//!
//! The types are here, one struct per TOML table with its defaults; the values that parse
//! themselves (`values.rs`), the checks of single values (`checks.rs`), the validation that names
//! each key (`validate.rs`) and loading with its secrets and TLS files (`load.rs`) beside them.

mod checks;
mod defaults;
mod load;
mod validate;
mod values;

pub use checks::{check_log_filter, host_problem, MAX_DURATION};
pub(crate) use load::read_secret;
pub use values::{BrokerAddr, BrokerUrl, ByteSize};

use checks::*;
pub use defaults::DEFAULT_SPOOL_DIR;
use defaults::*;
#[cfg(test)]
use load::*;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::messages::topics;
use crate::pem::{self, TlsFiles};
use crate::secret::Secret;

pub const DEFAULT_PATH: &str = "/etc/face2mqtt/config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {}", .problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub home_assistant: HomeAssistantConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub commands: CommandsConfig,
    #[serde(default)]
    pub people: PeopleConfig,
    #[serde(default, rename = "terminal")]
    pub terminals: Vec<TerminalConfig>,
    #[serde(default, rename = "button")]
    pub buttons: Vec<ButtonConfig>,
    #[serde(default)]
    pub status_led: Option<StatusLedConfig>,
    /// The file it was read from, for errors found after loading (GPIO at start).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`, parsed as it is read.
    pub url: BrokerUrl,
    #[serde(default = "default_base_topic")]
    pub base_topic: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM bundle of the CAs trusted for `mqtts://`; without it, Mozilla's roots (compiled in).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM, with its chain) for brokers that require one, and its key.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Trust exactly the broker certificate with this SHA-256 (as `openssl x509 -fingerprint
    /// -sha256` prints it), whatever its version or names: for brokers one cannot re-issue.
    #[serde(default)]
    pub server_cert_sha256: Option<String>,
    /// The TLS files, read when the config is loaded (not a key of the file).
    #[serde(skip)]
    pub tls: TlsFiles,
    /// MQTT keep-alive interval.
    #[serde(default = "secs::<30>", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Shortest and longest wait between reconnect attempts (exponential, with jitter).
    #[serde(default = "secs::<1>", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "secs::<60>", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How often `<base>/bridge/diagnostics` is published (also on every connect).
    #[serde(default = "secs::<60>", with = "humantime_serde")]
    pub diagnostics_interval: Duration,
    /// The MQTT version spoken: 5 (a refused publish says so), 3.1.1, or 5 falling back to 3.1.1
    /// when the broker refuses it.
    #[serde(default)]
    pub protocol: MqttProtocol,
}

/// `mqtt.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum MqttProtocol {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "5")]
    V5,
    #[serde(rename = "3.1.1")]
    V311,
}

/// Every key may be left out: the table's `Default` (`defaults.rs`) fills in what is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    pub discovery_prefix: String,
    /// Records older than this (backfilled, or held back by an outage) still go to the record
    /// topic but do not fire the Home Assistant event entity.
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
}

/// A LED on an output pin that shows the bridge's health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusLedConfig {
    /// BCM numbering.
    pub pin: u8,
    /// The LED lights when the pin is low. [false]
    #[serde(default)]
    pub active_low: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_size: ByteSize,
    /// Bytes of records held in memory on their way to the spool (all terminals together). When
    /// used up, the bridge stops reading the terminals until the spool has caught up.
    pub memory: ByteSize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `face2mqtt=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// A request older than this (by its `time`, or by how long it waited for a busy terminal)
    /// is refused.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// A second `open` within this time of the last one runs once.
    #[serde(with = "humantime_serde")]
    pub open_hold: Duration,
    /// Push this machine's time to terminals only while the kernel says NTP synchronized it.
    pub require_synchronized_clock: bool,
}

/// The people commands (`admit`, `pass`, `revoke`, `block`; README, "Visitors").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeopleConfig {
    /// How long a stranger's capture photo is kept in memory for `admit` and `block`.
    #[serde(with = "humantime_serde")]
    pub admit_window: Duration,
    /// The longest visitor pass `admit` and `pass` may give, counted from now.
    #[serde(with = "humantime_serde")]
    pub max_pass: Duration,
    /// How often the visitor passes sensor reads the terminal's visitors ("0s": only after a
    /// change and when a pass starts or ends).
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Shown in Home Assistant's device card (the terminal's API does not say).
    #[serde(default)]
    pub manufacturer: Option<String>,
    pub host: String,
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    #[serde(default = "default_ws_port")]
    pub ws_port: u16,
    /// `Config::load` reads `password_file` into it, and refuses a terminal without either.
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "secs::<{ 6 * 3600 }>", with = "humantime_serde")]
    pub time_sync_interval: Duration,
    /// Deadline for one HTTP call to the terminal.
    #[serde(default = "secs::<5>", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// WebSocket ping interval (the document's 10 s heartbeat).
    #[serde(default = "secs::<10>", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// The link counts as dead after this long with nothing received (the document's 33 s).
    #[serde(default = "secs::<33>", with = "humantime_serde")]
    pub dead_after: Duration,
    #[serde(default = "secs::<1>", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "secs::<60>", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Backfill looks back this much before the last record seen, for records the terminal
    /// stored late or with a clock that stepped.
    #[serde(default = "secs::<60>", with = "humantime_serde")]
    pub backfill_margin: Duration,
    /// On the very first start (no record seen yet), how far back to fetch.
    #[serde(default = "secs::<3600>", with = "humantime_serde")]
    pub backfill_first: Duration,
    /// Commands this terminal accepts over MQTT and from buttons; `[]` makes it read-only.
    /// Read as the commands themselves: a name that is none is an error at load.
    #[serde(default = "default_commands")]
    pub commands: Vec<crate::messages::Cmd>,
}

impl TerminalConfig {
    pub fn allowed_commands(&self) -> std::collections::BTreeSet<crate::messages::Cmd> {
        self.commands.iter().copied().collect()
    }

    /// Whether this terminal keeps stranger captures for `admit` / `block` by `event_id`.
    pub fn keeps_captures(&self) -> bool {
        use crate::messages::Cmd;
        self.commands
            .iter()
            .any(|c| matches!(c, Cmd::Admit | Cmd::Block))
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonAction {
    Open,
    Reboot,
    SyncTime,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pull {
    Up,
    Down,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonConfig {
    /// BCM numbering.
    pub pin: u8,
    pub terminal: String,
    pub press: ButtonAction,
    #[serde(default = "default_long_press")]
    pub long_press: ButtonAction,
    #[serde(default = "yes")]
    pub active_low: bool,
    #[serde(default = "default_pull")]
    pub pull: Pull,
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
    #[serde(default = "secs::<3>", with = "humantime_serde")]
    pub long_press_after: Duration,
}

#[cfg(test)]
mod tests;
