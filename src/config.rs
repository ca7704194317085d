// Over 450 lines: one struct per TOML table with its defaults, the validation that names each key, and their tests; split by table it would scatter the contract.
//! The config file: TOML as `docs/interface.md` fixes it, extended with tuning keys.
//!
//! Loading is three steps, each with errors that name the file and the key: parse (unknown keys
//! are errors, so typos do not pass silently), validate (values that parse but make no sense),
//! resolve (read password files). `face2mqtt check` runs all three.

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
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Shortest and longest wait between reconnect attempts (exponential, with jitter).
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How often `<base>/bridge/diagnostics` is published (also on every connect).
    #[serde(default = "default_diagnostics_interval", with = "humantime_serde")]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Records older than this (backfilled, or held back by an outage) still go to the record
    /// topic but do not fire the Home Assistant event entity.
    #[serde(default = "default_max_event_age", with = "humantime_serde")]
    pub max_event_age: Duration,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            enabled: true,
            discovery_prefix: default_discovery_prefix(),
            max_event_age: default_max_event_age(),
        }
    }
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
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Bytes of records held in memory on their way to the spool (all terminals together). When
    /// used up, the bridge stops reading the terminals until the spool has caught up.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: default_spool_dir(),
            max_size: default_max_size(),
            memory: default_memory(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `face2mqtt=debug,info`. `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// A request older than this (by its `time`, or by how long it waited for a busy terminal)
    /// is refused.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// A second `open` within this time of the last one runs once.
    #[serde(default = "default_open_hold", with = "humantime_serde")]
    pub open_hold: Duration,
    /// Push this machine's time to terminals only while the kernel says NTP synchronized it.
    #[serde(default = "yes")]
    pub require_synchronized_clock: bool,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            max_age: default_max_age(),
            open_hold: default_open_hold(),
            require_synchronized_clock: true,
        }
    }
}

/// The people commands (`admit`, `pass`, `revoke`, `block`; README, "Visitors").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleConfig {
    /// How long a stranger's capture photo is kept in memory for `admit` and `block`.
    #[serde(default = "default_admit_window", with = "humantime_serde")]
    pub admit_window: Duration,
    /// The longest visitor pass `admit` and `pass` may give, counted from now.
    #[serde(default = "default_max_pass", with = "humantime_serde")]
    pub max_pass: Duration,
    /// How often the visitor passes sensor reads the terminal's visitors ("0s": only after a
    /// change and when a pass starts or ends).
    #[serde(default = "default_people_refresh", with = "humantime_serde")]
    pub refresh: Duration,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        PeopleConfig {
            admit_window: default_admit_window(),
            max_pass: default_max_pass(),
            refresh: default_people_refresh(),
        }
    }
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
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_time_sync_interval", with = "humantime_serde")]
    pub time_sync_interval: Duration,
    /// Deadline for one HTTP call to the terminal.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// WebSocket ping interval (the document's 10 s heartbeat).
    #[serde(default = "default_ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// The link counts as dead after this long with nothing received (the document's 33 s).
    #[serde(default = "default_dead_after", with = "humantime_serde")]
    pub dead_after: Duration,
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Backfill looks back this much before the last record seen, for records the terminal
    /// stored late or with a clock that stepped.
    #[serde(default = "default_backfill_margin", with = "humantime_serde")]
    pub backfill_margin: Duration,
    /// On the very first start (no record seen yet), how far back to fetch.
    #[serde(default = "default_backfill_first", with = "humantime_serde")]
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

    /// The resolved password: `Config::load` reads `password_file` into it and refuses a
    /// terminal without either, so `None` is only a config that was never loaded so.
    pub fn secret(&self) -> Option<&Secret> {
        self.password.as_ref()
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
    #[serde(default = "default_long_press_after", with = "humantime_serde")]
    pub long_press_after: Duration,
}

/// A size written as `"512MiB"`, `"1GB"`, `"4096"` (bytes) or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let not_a_size = || format!("`{s}` is not a size like \"512MiB\"");
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "`{other}` is not a size unit (B, KiB, MiB, GiB, kB, MB, GB)"
                ))
            }
        };
        let too_large = || format!("`{s}` is too large");
        // Whole numbers in checked integer arithmetic: `as` on a float would saturate
        // "99999999999999999999GiB" into 16 EiB without a word.
        if !num.contains('.') {
            let n: u64 = num
                .parse()
                .map_err(|e: std::num::ParseIntError| match e.kind() {
                    std::num::IntErrorKind::PosOverflow => too_large(),
                    _ => not_a_size(),
                })?;
            return n.checked_mul(mult).map(ByteSize).ok_or_else(too_large);
        }
        let value: f64 = num.parse().map_err(|_| not_a_size())?;
        let bytes = value * mult as f64;
        // 2^64 is exact as a float; every finite float below it converts without loss of range.
        if !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
            return Err(too_large());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 30 && n % (1 << 30) == 0 {
            write!(f, "{}GiB", n >> 30)
        } else if n >= 1 << 20 && n % (1 << 20) == 0 {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n % (1 << 10) == 0 {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}B")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

fn yes() -> bool {
    true
}
fn default_base_topic() -> String {
    "face2mqtt".into()
}
fn default_max_event_age() -> Duration {
    Duration::from_secs(60)
}
fn default_diagnostics_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
/// `spool.dir` when the config says nothing: the unit's StateDirectory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/face2mqtt";

fn default_spool_dir() -> PathBuf {
    PathBuf::from(DEFAULT_SPOOL_DIR)
}
fn default_max_size() -> ByteSize {
    ByteSize(512 << 20)
}
/// 2 MiB: ~45 photo records or ~3,000 without, enough for the spool writer's group commits. Side
/// by side with 4 and 8 MiB (BENCHMARKS.md) it kept 4–5 MiB less resident under sustained load
/// and in a burst, and the larger budgets bought no speed.
fn default_memory() -> ByteSize {
    ByteSize(2 << 20)
}
fn default_log_level() -> String {
    "info".into()
}
fn default_http_port() -> u16 {
    80
}
fn default_ws_port() -> u16 {
    9000
}
fn default_time_sync_interval() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_ping_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_dead_after() -> Duration {
    Duration::from_secs(33)
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_backfill_margin() -> Duration {
    Duration::from_secs(60)
}
fn default_backfill_first() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_age() -> Duration {
    Duration::from_secs(10)
}
fn default_open_hold() -> Duration {
    Duration::from_secs(3)
}
fn default_commands() -> Vec<crate::messages::Cmd> {
    crate::messages::Cmd::DEFAULT.to_vec()
}
fn default_admit_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_pass() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_people_refresh() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_long_press() -> ButtonAction {
    ButtonAction::None
}
fn default_pull() -> Pull {
    Pull::Up
}
fn default_debounce() -> Duration {
    Duration::from_millis(50)
}
fn default_long_press_after() -> Duration {
    Duration::from_secs(3)
}

/// `mqtt.url` as written (for messages) and as the program uses it, checked once when the config
/// is read: nothing parses the text again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BrokerUrl {
    text: String,
    addr: BrokerAddr,
}

impl BrokerUrl {
    pub fn addr(&self) -> &BrokerAddr {
        &self.addr
    }
}

impl TryFrom<String> for BrokerUrl {
    type Error = String;
    fn try_from(text: String) -> Result<BrokerUrl, String> {
        let addr = BrokerAddr::parse(&text)?;
        Ok(BrokerUrl { text, addr })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerAddr {
    pub fn parse(url: &str) -> Result<BrokerAddr, String> {
        let (tls, rest) = if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            (false, r)
        } else if let Some(r) = url
            .strip_prefix("mqtts://")
            .or_else(|| url.strip_prefix("ssl://"))
        {
            (true, r)
        } else {
            return Err(format!(
                "`{url}` must start with mqtt:// or mqtts:// (or their old names tcp:// and ssl://)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if let Some((_, after)) = rest.rsplit_once('@') {
            // Never the login itself: this message reaches logs and terminals.
            let scheme = &url[..url.len() - rest.len()];
            return Err(format!(
                "`{scheme}…@{after}`: give the login in mqtt.username and mqtt.password (or password_file), not in the URL"
            ));
        }
        if rest.contains('/') {
            return Err(format!("`{url}`: give only host and port, no path"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{url}`: unclosed [ in IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("`{url}`: unexpected `{after}`")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse()
                        .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
                ),
                None => (rest.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        Ok(BrokerAddr { host, port, tls })
    }
}

/// One line: where, the offending line, and what is wrong (toml's own text spans several lines).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            // Counted on bytes: a span is not promised to fall on a character boundary.
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line_no = before.iter().filter(|b| **b == b'\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!("line {line_no} (`{line}`): {message}")
        }
        None => message.to_string(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The longest duration any setting takes. Durations are added to clocks, doubled by the
/// backoff and counted in nanoseconds; a year's worth never overflows any of that, while
/// humantime happily reads `"500000000y"`.
pub const MAX_DURATION: Duration = Duration::from_secs(400 * 24 * 3600);

/// A `log.level` is a tracing filter: comma-separated directives, each a level (`info`) or
/// `target=level` (`face2mqtt=debug`, `rumqttc::state=warn`). Checked here, strictly, before
/// tracing sees it: tracing's parser reads any word as a target (so `"loud"` would silently log
/// nothing of ours), and it panics on some non-ASCII text (it slices the untrimmed directive at
/// offsets of the trimmed one; found by the `config` fuzz target with `"\u{2005}_f=off"`).
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &str = "trace, debug, info, warn, error or off";
    let is_level = |l: &str| {
        matches!(
            l.to_ascii_lowercase().as_str(),
            "trace" | "debug" | "info" | "warn" | "error" | "off"
        )
    };
    let is_target = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
    };
    if filter.is_empty() {
        return Err(format!("is empty; give a level: {LEVELS}"));
    }
    for d in filter.split(',') {
        let ok = match d.split_once('=') {
            None => is_level(d),
            Some((target, level)) => is_target(target) && is_level(level),
        };
        if !ok {
            let shown: String = d.chars().take(40).collect();
            return Err(format!(
                "`{}` is not a level ({LEVELS}) or `target=level`",
                shown.escape_debug()
            ));
        }
    }
    // Only ASCII letters, digits and `_:-=,` are left: safe for tracing's parser.
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn valid_topic_base(t: &str) -> bool {
    !t.is_empty() && !t.starts_with('/') && !t.ends_with('/') && !t.contains(['+', '#', '\0'])
}

/// A value as an error quotes it: control characters made visible, and cut after 40 characters
/// (a 70,000-character topic must not become a 70,000-character error line).
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(40).collect();
    let more = if value.chars().nth(40).is_some() {
        "…"
    } else {
        ""
    };
    format!("{}{more}", cut.escape_debug())
}

/// A topic prefix under `$` is the broker's own space (`$SYS/...`, `$share/<group>/...`): MQTT
/// reserves it, and brokers drop a client's publishes there without an error, so the bridge
/// would look connected while nothing it sends arrives anywhere.
fn reserved_topic_problem(key: &str, topic: &str) -> Option<String> {
    topic.starts_with('$').then(|| {
        format!(
            "{key}: `{}` starts with `$`, which brokers reserve for themselves ($SYS, $share/...) and silently drop publishes to; choose a prefix without `$`",
            shown(topic)
        )
    })
}

/// What is wrong with a terminal's `host`, with what to write instead; `None` for a bare host
/// name, IPv4 address or IPv6 address. IPv6 is written without brackets (`fe80::1`): with them
/// the only reason to have brackets is a port, and ports have their own keys.
pub fn host_problem(host: &str) -> Option<String> {
    let ports = "ports have their own keys, http_port and ws_port";
    let instead = |what: &str| {
        let bare = bare_host(host);
        let suggestion = if bare.is_empty() || bare == host {
            String::new()
        } else {
            format!(": write `{}`", shown(&bare))
        };
        Some(format!("`{}` {what}{suggestion}", shown(host)))
    };
    if host.is_empty() {
        return Some("is empty; give the terminal's host name or IP address".into());
    }
    if host.contains(char::is_whitespace) {
        return instead("contains white space");
    }
    if host.contains("://") {
        return instead("has a scheme; give only the host name or address");
    }
    if host.contains('/') {
        return instead("has a path; give only the host name or address");
    }
    if host.contains('@') {
        return instead(
            "has a user name; give only the host name or address (the password has its own key)",
        );
    }
    if host.starts_with('[') {
        let has_port = host
            .split_once(']')
            .is_some_and(|(_, after)| !after.is_empty());
        return if has_port {
            instead(&format!("has a port in it ({ports})"))
        } else {
            instead("is an IPv6 address in brackets; write it without them")
        };
    }
    match host.matches(':').count() {
        0 => {}
        1 => return instead(&format!("has a port in it ({ports})")),
        _ if host.parse::<std::net::Ipv6Addr>().is_ok() => return None,
        _ => return instead("is neither a host name nor an IPv6 address"),
    }
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    if !host.bytes().all(name_byte) {
        return Some(format!(
            "`{}` is not a host name or IP address (letters, digits, `-`, `_` and `.`; IPv6 as `fe80::1`)",
            shown(host)
        ));
    }
    None
}

/// A host written with the extras people paste from a browser, stripped of them: the
/// suggestion in [`host_problem`]'s error.
fn bare_host(host: &str) -> String {
    let h = host.trim();
    let h = h.split_once("://").map_or(h, |(_, rest)| rest);
    let h = h.split('/').next().unwrap_or(h);
    let h = h.rsplit_once('@').map_or(h, |(_, rest)| rest);
    let h = match h.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None if h.matches(':').count() == 1 => h.split(':').next().unwrap_or(h),
        None => h,
    };
    h.split_whitespace().collect()
}

/// Whether two `host`s name the same machine: addresses compared as addresses (`FE80::0001` is
/// `fe80::1`), names without regard to case or a trailing dot.
fn same_host(a: &str, b: &str) -> bool {
    use std::net::IpAddr;
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a
            .trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.')),
    }
}

/// Two `[[terminal]]`s that reach the same terminal (same host and the same HTTP or WebSocket
/// port): each would take every record, so each recognition would be published twice, under
/// two event ids (the id is in the event id), and no consumer could tell them apart.
fn duplicate_endpoints(terminals: &[TerminalConfig]) -> Vec<String> {
    let mut p = Vec::new();
    for (j, later) in terminals.iter().enumerate() {
        for earlier in terminals.iter().take(j) {
            if !same_host(&earlier.host, &later.host) {
                continue;
            }
            let port = if earlier.http_port == later.http_port {
                format!("http_port {}", later.http_port)
            } else if earlier.ws_port == later.ws_port {
                format!("ws_port {}", later.ws_port)
            } else {
                continue;
            };
            p.push(format!(
                "terminal[{j}] ({}).host: terminal `{}` and terminal `{}` are the same terminal (`{}`, {port}); every recognition would be published twice under two event ids: keep one",
                later.id,
                earlier.id,
                later.id,
                shown(&later.host),
            ));
        }
    }
    p
}

/// The contributor named in a too-long-topic error: the longest of them, as that is the one to
/// shorten.
fn topic_too_long(built: usize, parts: &[(String, usize)]) -> Option<String> {
    if built <= topics::MAX_TOPIC_BYTES {
        return None;
    }
    let (key, _) = parts.iter().max_by_key(|(_, len)| *len)?;
    let lengths: Vec<String> = parts
        .iter()
        .map(|(k, len)| format!("{k} is {len} bytes"))
        .collect();
    Some(format!(
        "{key}: the bridge would build topics of up to {built} bytes from it, over MQTT's limit of {} bytes ({}); shorten it",
        topics::MAX_TOPIC_BYTES,
        lengths.join(", ")
    ))
}

impl Config {
    /// Parse, validate and resolve secrets. Every error names the file and the key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })?;
        config.path = Some(path.into());
        let mut problems = config.validate();
        if problems.is_empty() {
            problems = config.resolve_secrets();
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.into(),
                problems,
            })
        }
    }

    /// TOML to structure; unknown keys and wrong types are errors with line and key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        if config.mqtt.client_id.is_none() {
            config.mqtt.client_id = Some(format!("face2mqtt-{}", hostname()));
        }
        Ok(config)
    }

    /// Values that parse but cannot work. Each problem starts with the key it is about.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !valid_topic_base(&self.mqtt.base_topic) {
            p.push(format!(
                "mqtt.base_topic: `{}` must be a topic without wildcards or leading/trailing `/`",
                self.mqtt.base_topic
            ));
        }
        p.extend(reserved_topic_problem(
            "mqtt.base_topic",
            &self.mqtt.base_topic,
        ));
        if self.mqtt.password.is_some() && self.mqtt.password_file.is_some() {
            p.push("mqtt.password_file: give either password or password_file, not both".into());
        }
        if (self.mqtt.password.is_some() || self.mqtt.password_file.is_some())
            && self.mqtt.username.is_none()
        {
            p.push("mqtt.username: a password needs a username".into());
        }
        p.extend(self.mqtt.tls_problems());
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_min > self.mqtt.reconnect_max {
            p.push("mqtt.reconnect_min: must be above zero and at most reconnect_max".into());
        }
        if self.mqtt.keep_alive < Duration::from_secs(1) {
            p.push("mqtt.keep_alive: must be at least 1s".into());
        }
        if !valid_topic_base(&self.home_assistant.discovery_prefix) {
            p.push(format!(
                "home_assistant.discovery_prefix: `{}` is not a valid topic prefix",
                self.home_assistant.discovery_prefix
            ));
        }
        p.extend(reserved_topic_problem(
            "home_assistant.discovery_prefix",
            &self.home_assistant.discovery_prefix,
        ));
        p.extend(self.topic_length_problems());
        if self.commands.max_age < Duration::from_secs(1) {
            p.push("commands.max_age: must be at least 1s".into());
        }
        let people = &self.people;
        if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600))
            .contains(&people.admit_window)
        {
            p.push(
                "people.admit_window: must be between 1m and 24h (these are photos of people)"
                    .into(),
            );
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(366 * 24 * 3600))
            .contains(&people.max_pass)
        {
            p.push("people.max_pass: must be between 1m and 366d".into());
        }
        if !people.refresh.is_zero() && people.refresh < Duration::from_secs(60) {
            p.push(
                "people.refresh: use \"0s\" to read only after changes, or at least \"1m\"".into(),
            );
        }
        if self.spool.dir.as_os_str().is_empty() {
            p.push(
                "spool.dir: must not be empty (it would put the spool in the working directory)"
                    .into(),
            );
        }
        if let Err(e) = check_log_filter(&self.log.level) {
            p.push(format!("log.level: {e}"));
        }
        for (key, d) in self.durations() {
            if d > MAX_DURATION {
                p.push(format!(
                    "{key}: {} is longer than the {} any duration may be",
                    humantime::format_duration(d),
                    humantime::format_duration(MAX_DURATION)
                ));
            }
        }
        // MQTT carries the keep-alive in 16 bits of seconds.
        if self.mqtt.keep_alive > Duration::from_secs(u64::from(u16::MAX)) {
            p.push("mqtt.keep_alive: must be at most 65535s (MQTT's limit)".into());
        }
        if self.spool.max_size.0 < (1 << 20) {
            p.push(format!(
                "spool.max_size: {} is too small; give at least 1MiB",
                self.spool.max_size
            ));
        }
        // Below one photo record (~60 KB) every record would wait for the one before; above a
        // gigabyte it bounds nothing a Pi has.
        if !(256 << 10..=1 << 30).contains(&self.spool.memory.0) {
            p.push(format!(
                "spool.memory: {} is out of range; give 256KiB to 1GiB (default 2MiB)",
                self.spool.memory
            ));
        }
        if self.terminals.is_empty() {
            p.push("terminal: no [[terminal]] configured".into());
        }
        let mut ids = BTreeSet::new();
        for (i, t) in self.terminals.iter().enumerate() {
            let key = |k: &str| format!("terminal[{i}] ({}).{k}", t.id);
            if !valid_id(&t.id) {
                p.push(format!(
                    "terminal[{i}].id: `{}` must match [a-z0-9_-]+ (it is used in MQTT topics)",
                    t.id
                ));
            }
            if t.id == "bridge" {
                p.push(format!(
                    "terminal[{i}].id: `bridge` is taken by the bridge's own topics (<base>/bridge/...)"
                ));
            }
            if !ids.insert(t.id.as_str()) {
                p.push(format!(
                    "{}: `{}` is used by more than one terminal",
                    key("id"),
                    t.id
                ));
            }
            if let Some(e) = host_problem(&t.host) {
                p.push(format!("{}: {e}", key("host")));
            }
            match (&t.password, &t.password_file) {
                (None, None) => p.push(format!(
                    "{}: give password or password_file",
                    key("password")
                )),
                (Some(_), Some(_)) => p.push(format!(
                    "{}: give either password or password_file, not both",
                    key("password_file")
                )),
                _ => {}
            }
            if t.http_port == 0 || t.ws_port == 0 {
                p.push(format!("{}: ports must be 1-65535", key("http_port")));
            }
            if t.request_timeout < Duration::from_millis(100) {
                p.push(format!(
                    "{}: must be at least 100ms",
                    key("request_timeout")
                ));
            }
            if t.ping_interval.is_zero() || t.dead_after <= t.ping_interval {
                p.push(format!(
                    "{}: must be longer than ping_interval (and both above zero)",
                    key("dead_after")
                ));
            }
            if t.reconnect_min.is_zero() || t.reconnect_min > t.reconnect_max {
                p.push(format!(
                    "{}: must be above zero and at most reconnect_max",
                    key("reconnect_min")
                ));
            }
            if !t.time_sync_interval.is_zero() && t.time_sync_interval < Duration::from_secs(60) {
                p.push(format!(
                    "{}: use \"0s\" to disable or at least \"1m\"",
                    key("time_sync_interval")
                ));
            }
        }
        p.extend(duplicate_endpoints(&self.terminals));
        if self.home_assistant.max_event_age < Duration::from_secs(1) {
            p.push("home_assistant.max_event_age: must be at least 1s".into());
        }
        if self.mqtt.diagnostics_interval < Duration::from_secs(1) {
            p.push("mqtt.diagnostics_interval: must be at least 1s".into());
        }
        let mut pins = BTreeSet::new();
        if let Some(led) = &self.status_led {
            if led.pin > 27 {
                p.push(format!(
                    "status_led.pin: {} is not a BCM GPIO pin of a Raspberry Pi header (0-27)",
                    led.pin
                ));
            }
            pins.insert(led.pin);
        }
        for (i, b) in self.buttons.iter().enumerate() {
            if b.pin > 27 {
                p.push(format!(
                    "button[{i}].pin: {} is not a BCM GPIO pin of a Raspberry Pi header (0-27)",
                    b.pin
                ));
            }
            if !pins.insert(b.pin) {
                p.push(format!(
                    "button[{i}].pin: pin {} is used by more than one button (or the status LED)",
                    b.pin
                ));
            }
            if !self.terminals.iter().any(|t| t.id == b.terminal) {
                p.push(format!(
                    "button[{i}].terminal: no terminal has id `{}`",
                    b.terminal
                ));
            }
            if b.debounce > Duration::from_secs(1) {
                p.push(format!(
                    "button[{i}].debounce: {:?} is longer than a press; give at most 1s",
                    b.debounce
                ));
            }
            if b.long_press_after <= b.debounce {
                p.push(format!(
                    "button[{i}].long_press_after: must be longer than debounce"
                ));
            }
        }
        p
    }

    /// Topics over MQTT's length limit cannot even be encoded: the bridge would start and never
    /// connect. The longest terminal id decides (every terminal gets the same suffixes).
    fn topic_length_problems(&self) -> Vec<String> {
        let base = &self.mqtt.base_topic;
        let prefix = &self.home_assistant.discovery_prefix;
        let longest = self
            .terminals
            .iter()
            .enumerate()
            .max_by_key(|(_, t)| t.id.len());
        let id = longest.map_or("", |(_, t)| t.id.as_str());
        let id_part =
            longest.map(|(i, t)| (format!("terminal[{i}] ({}).id", shown(&t.id)), t.id.len()));
        let base_part = ("mqtt.base_topic".to_string(), base.len());
        let mut p = Vec::new();
        let parts: Vec<_> = std::iter::once(base_part.clone())
            .chain(id_part.clone())
            .collect();
        p.extend(topic_too_long(topics::longest_under_base(base, id), &parts));
        if self.home_assistant.enabled {
            let parts: Vec<_> = [
                ("home_assistant.discovery_prefix".to_string(), prefix.len()),
                base_part,
            ]
            .into_iter()
            .chain(id_part)
            .collect();
            let built = topics::longest_under_prefix(prefix, base, id);
            p.extend(topic_too_long(built, &parts));
        }
        p
    }

    /// Every duration in the config, with its key, for the checks that hold for all of them.
    fn durations(&self) -> Vec<(String, Duration)> {
        let m = &self.mqtt;
        let mut out = vec![
            ("mqtt.keep_alive".to_string(), m.keep_alive),
            ("mqtt.reconnect_min".to_string(), m.reconnect_min),
            ("mqtt.reconnect_max".to_string(), m.reconnect_max),
            (
                "mqtt.diagnostics_interval".to_string(),
                m.diagnostics_interval,
            ),
            (
                "home_assistant.max_event_age".to_string(),
                self.home_assistant.max_event_age,
            ),
            ("commands.max_age".to_string(), self.commands.max_age),
            ("commands.open_hold".to_string(), self.commands.open_hold),
            ("people.admit_window".to_string(), self.people.admit_window),
            ("people.max_pass".to_string(), self.people.max_pass),
            ("people.refresh".to_string(), self.people.refresh),
        ];
        for (i, t) in self.terminals.iter().enumerate() {
            for (k, d) in [
                ("time_sync_interval", t.time_sync_interval),
                ("request_timeout", t.request_timeout),
                ("ping_interval", t.ping_interval),
                ("dead_after", t.dead_after),
                ("reconnect_min", t.reconnect_min),
                ("reconnect_max", t.reconnect_max),
                ("backfill_margin", t.backfill_margin),
                ("backfill_first", t.backfill_first),
            ] {
                out.push((format!("terminal[{i}] ({}).{k}", t.id), d));
            }
        }
        for (i, b) in self.buttons.iter().enumerate() {
            out.push((format!("button[{i}].debounce"), b.debounce));
            out.push((format!("button[{i}].long_press_after"), b.long_press_after));
        }
        out
    }

    /// Reads `password_file`s (systemd credentials, say) and the TLS files into the config.
    fn resolve_secrets(&mut self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(path) = &self.mqtt.password_file {
            match read_secret(path) {
                Ok(s) => self.mqtt.password = Some(s),
                Err(e) => p.push(format!("mqtt.password_file: {e}")),
            }
        }
        p.extend(self.mqtt.read_tls_files());
        for (i, t) in self.terminals.iter_mut().enumerate() {
            if let Some(path) = &t.password_file {
                match read_secret(path) {
                    Ok(s) => t.password = Some(s),
                    Err(e) => p.push(format!("terminal[{i}] ({}).password_file: {e}", t.id)),
                }
            }
        }
        p
    }

    pub fn terminal(&self, id: &str) -> Option<&TerminalConfig> {
        self.terminals.iter().find(|t| t.id == id)
    }
}

impl MqttConfig {
    /// TLS keys that cannot work together or with the URL.
    fn tls_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => p.push(
                "mqtt.client_key_file: client_cert_file needs its key: give client_key_file too"
                    .into(),
            ),
            (None, Some(_)) => p.push(
                "mqtt.client_cert_file: client_key_file needs its certificate: give client_cert_file too"
                    .into(),
            ),
            _ => {}
        }
        match self.url.addr() {
            BrokerAddr { tls: false, .. } => {
                let given = [
                    ("ca_file", &self.ca_file),
                    ("client_cert_file", &self.client_cert_file),
                    ("client_key_file", &self.client_key_file),
                ];
                for (key, _) in given.iter().filter(|(_, v)| v.is_some()) {
                    p.push(format!(
                        "mqtt.{key}: TLS files need a TLS connection: use mqtts:// in mqtt.url"
                    ));
                }
                if self.server_cert_sha256.is_some() {
                    p.push("mqtt.server_cert_sha256: a pin needs a TLS connection: use mqtts:// in mqtt.url".into());
                }
            }
            // The name the broker's certificate is checked against: a DNS name or an address.
            BrokerAddr {
                tls: true, host, ..
            } => {
                if rustls::pki_types::ServerName::try_from(host.as_str()).is_err() {
                    p.push(format!(
                        "mqtt.url: `{host}` is neither a DNS name nor an IP address, so the broker's certificate cannot be checked against it"
                    ));
                }
            }
        }
        p
    }

    /// Reads `ca_file`, `client_cert_file` and `client_key_file` into `tls`.
    fn read_tls_files(&mut self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(pin) = &self.server_cert_sha256 {
            match pem::sha256_pin(pin) {
                Ok(pin) => self.tls.pin = Some(pin),
                Err(e) => p.push(format!("mqtt.server_cert_sha256: {e}")),
            }
        }
        if let Some(path) = &self.ca_file {
            match pem::ca_bundle(path) {
                Ok(store) => self.tls.ca = Some(store),
                Err(e) => p.push(format!("mqtt.ca_file: {e}")),
            }
        }
        if let (Some(cert), Some(key)) = (&self.client_cert_file, &self.client_key_file) {
            let chain = pem::certificates(cert).map_err(|e| format!("mqtt.client_cert_file: {e}"));
            let der = pem::private_key(key).map_err(|e| format!("mqtt.client_key_file: {e}"));
            match (chain, der) {
                (Ok(chain), Ok(der)) => match pem::client_identity(chain, der, cert, key) {
                    Ok(id) => self.tls.client = Some(id),
                    Err(e @ pem::PemError::BadCertificate { .. }) => {
                        p.push(format!("mqtt.client_cert_file: {e}"))
                    }
                    Err(e) => p.push(format!("mqtt.client_key_file: {e}")),
                },
                (chain, der) => p.extend(chain.err().into_iter().chain(der.err())),
            }
        }
        p
    }
}

/// Reads a password file: its first 64 KiB at most (a password is short; `/dev/zero` is not a
/// password), without one trailing newline (LF or CRLF).
pub(crate) fn read_secret(path: &Path) -> Result<Secret, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
        .map_err(|e| {
        match credential_source(path) {
            Some(name) if e.kind() == std::io::ErrorKind::NotFound => format!(
                "cannot read {}: this path exists only while systemd runs the service (the credential `{name}` that LoadCredential= in its unit provides), so no shell can read it. To check the config now, check a copy whose password_file names the file LoadCredential= reads (e.g. /etc/face2mqtt/{name}.password), or start the service and read `journalctl -u face2mqtt`",
                path.display()
            ),
            _ => format!("cannot read {}: {e}", path.display()),
        }
    })?;
    // One trailing newline is how editors and `echo` leave it; it is not part of the password.
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

/// The credential's name when `path` is where systemd puts a service's credentials
/// (`/run/credentials/<unit>/<name>`), which exist only while that unit runs.
fn credential_source(path: &Path) -> Option<String> {
    let rest = path.strip_prefix("/run/credentials").ok()?;
    let mut parts = rest.components();
    let (_unit, name) = (parts.next()?, parts.next()?);
    parts
        .next()
        .is_none()
        .then(|| name.as_os_str().to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"

[[terminal]]
id = "front-door"
host = "192.168.1.50"
password = "123456"
"#;

    /// The problems `validate` finds in MINIMAL with `from` replaced by `to`.
    fn problems_with(from: &str, to: &str) -> Vec<String> {
        let text = MINIMAL.replacen(from, to, 1);
        assert_ne!(text, MINIMAL, "{from} is in MINIMAL");
        Config::parse(&text).expect("parses").validate()
    }

    fn one_problem_about(problems: &[String], key: &str, words: &str) {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(key) && p.contains(words)),
            "{key} … {words}: {problems:?}"
        );
    }

    #[test]
    fn a_base_topic_or_discovery_prefix_starting_with_dollar_is_refused() {
        for base in ["$SYS/doors", "$share/g/doors"] {
            let p = problems_with(
                "url = \"mqtt://127.0.0.1:1883\"",
                &format!("url = \"mqtt://127.0.0.1:1883\"\nbase_topic = \"{base}\""),
            );
            one_problem_about(&p, "mqtt.base_topic", "starts with `$`");
        }
        let p = problems_with(
            "[[terminal]]",
            "[home_assistant]\ndiscovery_prefix = \"$SYS\"\n[[terminal]]",
        );
        one_problem_about(&p, "home_assistant.discovery_prefix", "starts with `$`");
    }

    #[test]
    fn a_host_with_a_port_white_space_a_scheme_or_a_path_is_refused_saying_what_to_write() {
        for (host, words) in [
            ("10.0.0.5:80", "has a port"),
            ("10.0.0.5 ", "white space"),
            ("http://10.0.0.5", "has a scheme"),
            ("10.0.0.5/", "has a path"),
            ("[fe80::1]:80", "has a port"),
        ] {
            let p = problems_with("host = \"192.168.1.50\"", &format!("host = \"{host}\""));
            one_problem_about(&p, "terminal[0] (front-door).host", words);
            assert!(p.iter().any(|l| l.contains(": write `")), "{p:?}");
        }
    }

    #[test]
    fn bare_hosts_and_ipv6_addresses_are_taken() {
        for host in ["door.local", "10.0.0.5", "fe80::1", "terminal_1"] {
            assert_eq!(host_problem(host), None, "{host}");
        }
    }

    #[test]
    fn two_terminals_at_one_endpoint_are_refused_naming_both() {
        let second = "\n[[terminal]]\nid = \"again\"\nhost = \"192.168.1.50\"\npassword = \"x\"\n";
        let text = format!("{MINIMAL}{second}");
        let p = Config::parse(&text).expect("parses").validate();
        one_problem_about(
            &p,
            "terminal[1] (again).host",
            "`front-door` and terminal `again`",
        );
        let other_port = format!("{MINIMAL}{second}http_port = 81\nws_port = 9001\n");
        assert!(Config::parse(&other_port)
            .expect("parses")
            .validate()
            .is_empty());
    }

    #[test]
    fn a_base_topic_too_long_for_mqtt_is_refused_with_its_length() {
        let long = "a".repeat(70_000);
        let p = problems_with(
            "url = \"mqtt://127.0.0.1:1883\"",
            &format!("url = \"mqtt://127.0.0.1:1883\"\nbase_topic = \"{long}\""),
        );
        one_problem_about(&p, "mqtt.base_topic", "over MQTT's limit of 65535 bytes");
        assert!(p.iter().all(|l| l.len() < 1000), "no line quotes it whole");
    }

    #[test]
    fn a_minimal_config_gets_the_documented_defaults() {
        let c = Config::parse(MINIMAL).expect("parses");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.mqtt.base_topic, "face2mqtt");
        assert!(c
            .mqtt
            .client_id
            .as_deref()
            .is_some_and(|id| id.starts_with("face2mqtt-")));
        assert!(c.home_assistant.enabled);
        assert_eq!(c.home_assistant.discovery_prefix, "homeassistant");
        assert_eq!(c.spool.dir, PathBuf::from("/var/lib/face2mqtt"));
        assert_eq!(c.spool.max_size, ByteSize(512 << 20));
        assert_eq!(c.spool.memory, ByteSize(2 << 20));
        let t = &c.terminals[0];
        assert_eq!((t.http_port, t.ws_port), (80, 9000));
        assert_eq!(t.time_sync_interval, Duration::from_secs(6 * 3600));
        assert_eq!(t.display_name(), "front-door");
        assert_eq!(
            (t.ping_interval, t.dead_after),
            (Duration::from_secs(10), Duration::from_secs(33))
        );
    }

    #[test]
    fn a_terminal_s_commands_are_its_allow_list_and_by_default_every_command() {
        use crate::messages::Cmd;
        let c = Config::parse(MINIMAL).expect("parses");
        assert_eq!(
            c.terminals[0].allowed_commands(),
            [Cmd::Open, Cmd::Reboot, Cmd::SyncTime]
                .into_iter()
                .collect()
        );
        let text = MINIMAL.replace("password =", "commands = [\"sync_time\"]\npassword =");
        let c = Config::parse(&text).expect("parses");
        assert_eq!(
            c.terminals[0].allowed_commands(),
            [Cmd::SyncTime].into_iter().collect()
        );
        let text = MINIMAL.replace("password =", "commands = []\npassword =");
        let c = Config::parse(&text).expect("parses");
        assert!(c.terminals[0].allowed_commands().is_empty());
    }

    #[test]
    fn the_people_commands_are_off_unless_a_terminal_names_them() {
        use crate::messages::Cmd;
        let c = Config::parse(MINIMAL).expect("parses");
        assert!(c.terminals[0]
            .allowed_commands()
            .iter()
            .all(|c| !c.is_people()));
        assert!(!c.terminals[0].keeps_captures());
        let text = MINIMAL.replace("password =", "commands = [\"open\", \"admit\"]\npassword =");
        let c = Config::parse(&text).expect("parses");
        assert!(c.terminals[0].allowed_commands().contains(&Cmd::Admit));
        assert!(c.terminals[0].keeps_captures());
        assert_eq!(c.people.max_pass, Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn a_misspelt_command_fails_the_load_naming_the_key_and_the_choices() {
        let text = MINIMAL.replace("password =", "commands = [\"opne\"]\npassword =");
        let err = Config::parse(&text).expect_err("refused");
        assert!(err.contains("commands") && err.contains("opne"), "{err}");
        assert!(err.contains("admit") && err.contains("sync_time"), "{err}");
    }

    #[test]
    fn people_windows_out_of_range_are_refused_by_key() {
        for (k, v) in [
            ("admit_window", "30s"),
            ("admit_window", "2d"),
            ("max_pass", "400d"),
            ("refresh", "5s"),
        ] {
            let text = format!("{MINIMAL}\n[people]\n{k} = \"{v}\"\n");
            let problems = Config::parse(&text).expect("parses").validate();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("people.{k}:"))),
                "{k}={v}: {problems:?}"
            );
        }
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let text = MINIMAL.replace("host =", "hots = \"x\"\nhost =");
        let err = Config::parse(&text).expect_err("unknown key");
        assert!(err.contains("hots"), "{err}");
    }

    #[test]
    fn a_bad_terminal_id_names_the_key() {
        let text = MINIMAL.replace("front-door", "Front Door");
        let problems = Config::parse(&text).expect("parses").validate();
        assert!(
            problems.iter().any(|p| p.starts_with("terminal[0].id:")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_terminal_without_password_is_invalid() {
        let text = MINIMAL.replace("password = \"123456\"", "");
        let problems = Config::parse(&text).expect("parses").validate();
        assert!(
            problems
                .iter()
                .any(|p| p.contains(".password: give password or password_file")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_button_must_name_a_configured_terminal() {
        let text =
            format!("{MINIMAL}\n[[button]]\npin = 17\nterminal = \"back\"\npress = \"open\"\n");
        let problems = Config::parse(&text).expect("parses").validate();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("button[0].terminal:")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_duration_is_a_parse_error() {
        let text = MINIMAL.replace(
            "password = \"123456\"",
            "password = \"1\"\ntime_sync_interval = \"often\"",
        );
        let err = Config::parse(&text).expect_err("bad duration");
        assert!(err.contains("time_sync_interval"), "{err}");
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("512MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1 GB"), Ok(ByteSize(1_000_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("lots").is_err());
        assert!(ByteSize::parse("5 parsecs").is_err());
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
    }

    /// Finding 10 of issue 9: this was accepted (the float saturated to 16 EiB).
    #[test]
    fn a_memory_budget_outside_256_kib_to_1_gib_is_a_config_error_naming_the_key() {
        for bad in ["0", "255KiB", "2GiB", "18446744073709551615"] {
            let text = format!("{MINIMAL}\n[spool]\nmemory = \"{bad}\"\n");
            let c = Config::parse(&text).expect("parses");
            let problems = c.validate();
            assert!(
                problems.iter().any(|p| p.starts_with("spool.memory:")),
                "{bad}: {problems:?}"
            );
        }
        for good in ["256KiB", "8MiB", "1GiB"] {
            let text = format!("{MINIMAL}\n[spool]\nmemory = \"{good}\"\n");
            let c = Config::parse(&text).expect("parses");
            assert!(c.validate().is_empty(), "{good}: {:?}", c.validate());
        }
    }

    #[test]
    fn a_size_that_overflows_is_an_error_not_a_saturated_number() {
        assert!(ByteSize::parse("99999999999999999999GiB").is_err());
        assert!(ByteSize::parse("18446744073709551615GiB").is_err());
        assert!(ByteSize::parse("99999999999999999999.5GiB").is_err());
        assert!(ByteSize::parse("18446744073709551616").is_err());
        assert_eq!(
            ByteSize::parse("18446744073709551615"),
            Ok(ByteSize(u64::MAX))
        );
        assert_eq!(ByteSize::parse("1.5KiB"), Ok(ByteSize(1536)));
        let text = format!("{MINIMAL}\n[spool]\nmax_size = \"99999999999999999999GiB\"\n");
        let e = Config::parse(&text).expect_err("refused");
        assert!(e.contains("max_size") && e.contains("too large"), "{e}");
    }

    /// Finding 10 of issue 9: the spool went into the working directory.
    #[test]
    fn an_empty_spool_dir_is_a_config_error() {
        let c = Config::parse(&format!("{MINIMAL}\n[spool]\ndir = \"\"\n")).expect("parses");
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.starts_with("spool.dir:")),
            "{problems:?}"
        );
    }

    /// Finding 10 of issue 9: any word passed as a filter (a target that never logs).
    #[test]
    fn a_garbage_log_level_is_a_config_error() {
        for bad in [
            "loud",
            "",
            "info,,",
            "face2mqtt=loud",
            "=info",
            "info;debug",
            "a b=info",
            " info",
            // Found by the `config` fuzz target: panicked inside tracing's filter parser.
            "\u{2005}_f=off",
        ] {
            let c =
                Config::parse(&format!("{MINIMAL}\n[log]\nlevel = \"{bad}\"\n")).expect("parses");
            let problems = c.validate();
            assert!(
                problems.iter().any(|p| p.starts_with("log.level:")),
                "`{bad}`: {problems:?}"
            );
        }
        for good in [
            "info",
            "WARN",
            "face2mqtt=trace,info",
            "face2mqtt::pipeline::ingest=debug,rumqttc=off",
        ] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn a_duration_beyond_a_year_is_a_config_error() {
        let text = MINIMAL.replace(
            "password = \"123456\"",
            "password = \"123456\"\nreconnect_max = \"100000000y\"\nbackfill_first = \"500y\"",
        );
        let c = Config::parse(&text).expect("parses");
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.contains(".reconnect_max:"))
                && problems.iter().any(|p| p.contains(".backfill_first:")),
            "{problems:?}"
        );
        let c = Config::parse(MINIMAL).expect("parses");
        assert_eq!(c.validate(), Vec::<String>::new());
    }

    #[test]
    fn a_keep_alive_beyond_mqtts_16_bits_is_a_config_error() {
        let text = MINIMAL.replace(
            "url = \"mqtt://127.0.0.1:1883\"",
            "url = \"mqtt://127.0.0.1:1883\"\nkeep_alive = \"20h\"",
        );
        let problems = Config::parse(&text).expect("parses").validate();
        assert!(
            problems.iter().any(|p| p.starts_with("mqtt.keep_alive:")),
            "{problems:?}"
        );
    }

    #[test]
    fn broker_urls_parse_with_default_ports() {
        assert_eq!(
            BrokerAddr::parse("mqtt://h"),
            Ok(BrokerAddr {
                host: "h".into(),
                port: 1883,
                tls: false
            })
        );
        assert_eq!(
            BrokerAddr::parse("mqtts://h:9999"),
            Ok(BrokerAddr {
                host: "h".into(),
                port: 9999,
                tls: true
            })
        );
        assert_eq!(
            BrokerAddr::parse("mqtt://[::1]:1884"),
            Ok(BrokerAddr {
                host: "::1".into(),
                port: 1884,
                tls: false
            })
        );
        assert!(BrokerAddr::parse("http://h").is_err());
        assert!(BrokerAddr::parse("mqtt://u:p@h").is_err());
        let e = BrokerAddr::parse("mqtt://bridge:s3cret@h:1884").expect_err("a login in the URL");
        assert!(
            !e.contains("s3cret") && e.contains("mqtt.username") && e.contains("h:1884"),
            "{e}"
        );
        let e = BrokerAddr::parse("mqtt://h/path").expect_err("a path");
        assert!(e.contains("no path") && !e.contains("username"), "{e}");
    }

    #[test]
    fn mqtts_without_tls_files_is_valid_and_trusts_the_built_in_roots() {
        let text = MINIMAL.replace("mqtt://127.0.0.1:1883", "mqtts://broker.example");
        let c = Config::parse(&text).expect("parses");
        assert_eq!(c.validate(), Vec::<String>::new());
        assert!(c.mqtt.tls.ca.is_none() && c.mqtt.tls.client.is_none());
    }

    #[test]
    fn an_mqtts_host_a_certificate_cannot_name_is_a_config_error() {
        let text = MINIMAL.replace("mqtt://127.0.0.1:1883", "mqtts://bad_host!");
        let problems = Config::parse(&text).expect("parses").validate();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("mqtt.url: `bad_host!`")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_client_key_without_its_certificate_names_the_missing_key() {
        let text = MINIMAL.replace(
            "mqtt://127.0.0.1:1883\"",
            "mqtts://broker.example\"\nclient_key_file = \"/k\"",
        );
        let problems = Config::parse(&text).expect("parses").validate();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("mqtt.client_cert_file:")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_password_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            MINIMAL.replace(
                "password = \"123456\"",
                &format!("password_file = {:?}", pw),
            ),
        )
        .expect("write");
        let c = Config::load(&cfg).expect("loads");
        assert_eq!(c.terminals[0].secret().map(Secret::expose), Some("s3cret"));
    }

    #[test]
    fn a_missing_password_file_names_the_key_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            MINIMAL.replace(
                "password = \"123456\"",
                "password_file = \"/nonexistent/pw\"",
            ),
        )
        .expect("write");
        let err = Config::load(&cfg).expect_err("missing file").to_string();
        assert!(
            err.contains("password_file") && err.contains("/nonexistent/pw"),
            "{err}"
        );
    }

    #[test]
    fn a_password_file_that_never_ends_is_read_no_further_than_64_kib() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("huge");
        std::fs::write(&pw, vec![b'x'; 1 << 20]).expect("write");
        let s = read_secret(&pw).expect("reads");
        assert_eq!(s.expose().len(), 64 << 10);
    }

    #[test]
    fn a_systemd_credential_outside_the_service_is_explained_not_just_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("c.toml");
        let path = "/run/credentials/face2mqtt-test-absent.service/front-door";
        std::fs::write(
            &cfg,
            MINIMAL.replace(
                "password = \"123456\"",
                &format!("password_file = \"{path}\""),
            ),
        )
        .expect("write");
        let err = Config::load(&cfg)
            .expect_err("no credential here")
            .to_string();
        assert!(
            err.contains(path) && err.contains("only while systemd runs the service"),
            "{err}"
        );
        assert!(err.contains("/etc/face2mqtt/front-door.password"), "{err}");
    }

    #[test]
    fn only_a_file_directly_in_a_units_credential_directory_is_a_credential() {
        let named = |p: &str| credential_source(Path::new(p));
        assert_eq!(
            named("/run/credentials/x.service/mqtt").as_deref(),
            Some("mqtt")
        );
        assert_eq!(named("/run/credentials/x.service"), None);
        assert_eq!(named("/run/credentials/x.service/a/b"), None);
        assert_eq!(named("/etc/face2mqtt/mqtt.password"), None);
    }

    #[test]
    fn the_installed_config_is_minimal_and_valid_as_shipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, include_str!("../packaging/config.toml")).expect("write");
        let c = Config::load(&cfg).expect("the installed config loads");
        assert_eq!(c.terminals.len(), 1, "one terminal, no leftover second one");
        assert!(
            c.buttons.is_empty(),
            "no button opens a door on a pin the site may use"
        );
        assert!(
            c.status_led.is_none(),
            "no LED drives a pin the site may use"
        );
        assert!(
            c.terminals[0].password_file.is_none(),
            "nothing only systemd can read"
        );
        assert_eq!(
            c.spool.dir,
            Path::new("/var/lib/face2mqtt"),
            "the unit's StateDirectory"
        );
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = include_str!("../examples/config.toml");
        let c = Config::parse(text).expect("example parses");
        assert_eq!(c.validate(), Vec::<String>::new());
        assert!(!c.terminals.is_empty() && !c.buttons.is_empty());
    }
}
