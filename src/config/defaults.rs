//! The defaults of keys a config may leave out (docs/interface.md lists them); a duration's is
//! at its field, as `secs::<N>`.

use super::*;

pub(super) fn yes() -> bool {
    true
}
/// A duration of `S` seconds, for `#[serde(default = "secs::<S>")]`.
pub(super) fn secs<const S: u64>() -> Duration {
    Duration::from_secs(S)
}
pub(super) fn default_base_topic() -> String {
    "face2mqtt".into()
}
/// `spool.dir` when the config says nothing: the unit's StateDirectory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/face2mqtt";

pub(super) fn default_http_port() -> u16 {
    80
}
pub(super) fn default_ws_port() -> u16 {
    9000
}
pub(super) fn default_commands() -> Vec<crate::messages::Cmd> {
    crate::messages::Cmd::DEFAULT.to_vec()
}
pub(super) fn default_long_press() -> ButtonAction {
    ButtonAction::None
}
pub(super) fn default_pull() -> Pull {
    Pull::Up
}
pub(super) fn default_debounce() -> Duration {
    Duration::from_millis(50)
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            enabled: true,
            discovery_prefix: "homeassistant".into(),
            max_event_age: Duration::from_secs(60),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from(DEFAULT_SPOOL_DIR),
            max_size: ByteSize(512 << 20),
            // 2 MiB: ~45 photo records or ~3,000 without, enough for the spool writer's group
            // commits. Side by side with 4 and 8 MiB (BENCHMARKS.md) it kept 4–5 MiB less
            // resident under sustained load and in a burst, and the larger budgets bought no speed.
            memory: ByteSize(2 << 20),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            max_age: Duration::from_secs(10),
            open_hold: Duration::from_secs(3),
            require_synchronized_clock: true,
        }
    }
}

impl Default for PeopleConfig {
    fn default() -> Self {
        PeopleConfig {
            admit_window: Duration::from_secs(15 * 60),
            max_pass: Duration::from_secs(7 * 24 * 3600),
            refresh: Duration::from_secs(15 * 60),
        }
    }
}
