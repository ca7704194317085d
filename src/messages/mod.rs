//! What the tasks send each other, and the topics they talk on.
//!
//! A leaf: nothing here imports a runtime module, so every task can name these types without
//! importing another task. The arrows of `docs/architecture.md` are the channels that carry them.

pub mod topics;

use std::time::Instant;

/// A terminal command, from MQTT, an exit button or the time-sync timer. A terminal's
/// `commands` list reads into these (`config.rs`), so a misspelt name fails the config load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmd {
    Open,
    Reboot,
    SyncTime,
    /// Enrol a stranger's capture as a visitor (and open): `door/command/people.rs`.
    Admit,
    /// Add or change a visitor pass from a photo.
    Pass,
    /// Remove a visitor pass.
    Revoke,
    /// Put a capture's face or a user on the blacklist.
    Block,
}

impl Cmd {
    pub fn parse(s: &str) -> Option<Cmd> {
        Cmd::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cmd::Open => "open",
            Cmd::Reboot => "reboot",
            Cmd::SyncTime => "sync_time",
            Cmd::Admit => "admit",
            Cmd::Pass => "pass",
            Cmd::Revoke => "revoke",
            Cmd::Block => "block",
        }
    }

    /// The commands that change who the terminal lets in; none is allowed unless a terminal's
    /// `commands` names it.
    pub fn is_people(self) -> bool {
        matches!(self, Cmd::Admit | Cmd::Pass | Cmd::Revoke | Cmd::Block)
    }

    pub const ALL: [Cmd; 7] = [
        Cmd::Open,
        Cmd::Reboot,
        Cmd::SyncTime,
        Cmd::Admit,
        Cmd::Pass,
        Cmd::Revoke,
        Cmd::Block,
    ];
    /// A terminal's `commands` when the config says nothing: the door's, never the people's.
    pub const DEFAULT: [Cmd; 3] = [Cmd::Open, Cmd::Reboot, Cmd::SyncTime];
}

/// What Home Assistant's lock entity sends on `<base>/<t>/lock/set` (its `payload_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockCommand {
    Lock,
    Unlock,
    Open,
}

impl LockCommand {
    pub const ALL: [LockCommand; 3] = [LockCommand::Lock, LockCommand::Unlock, LockCommand::Open];

    pub fn payload(self) -> &'static str {
        match self {
            LockCommand::Lock => "LOCK",
            LockCommand::Unlock => "UNLOCK",
            LockCommand::Open => "OPEN",
        }
    }
}

/// What the lock shows on `<base>/<t>/lock/state` (its `state_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Locked,
    Unlocked,
    Open,
}

impl LockState {
    pub fn as_str(self) -> &'static str {
        match self {
            LockState::Locked => "locked",
            LockState::Unlocked => "unlocked",
            LockState::Open => "open",
        }
    }
}

/// Messages other tasks want published (to the MQTT session).
#[derive(Debug, Clone)]
pub enum Outbound {
    /// The terminal link went up or down (`<base>/<t>/availability`, retained, and published
    /// again after every reconnect).
    Availability { terminal: String, online: bool },
    /// A retained state the broker must hold whenever we are connected (the lock's): the latest
    /// per topic is published again after every reconnect, as the broker may have lost it.
    State { topic: String, payload: Vec<u8> },
    /// Anything else; dropped while the broker is unreachable (a late answer is no answer).
    Message {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
}

/// A message that came off MQTT on a subscribed topic.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

/// What the command router takes.
#[derive(Debug)]
pub enum RouterMsg {
    Mqtt(Incoming),
    /// A stranger's record went out with this capture (from the publisher, for terminals that
    /// allow `admit` or `block`): kept for `people.admit_window`.
    Captured {
        terminal: String,
        event_id: String,
        jpeg: Vec<u8>,
    },
    Button {
        terminal: String,
        cmd: Cmd,
        pin: u8,
        at: Instant,
    },
    /// The terminal opened on an OPEN or UNLOCK from its lock (from the executor, which alone
    /// knows the outcome): the lock shows `shows` for the hold time.
    LockOpened {
        terminal: String,
        shows: LockState,
    },
}

/// What the terminal reported about itself (`/api/device/information` and the temperature unit
/// of its SmartFace settings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceDetails {
    pub model: Option<String>,
    pub sw_version: Option<String>,
    pub serial_number: Option<String>,
    pub fahrenheit: bool,
}

/// A spooled record the publisher has just handed to the broker (for the consumers that follow
/// records: the retained last record and the fresh-event rule).
#[derive(Debug, Clone)]
pub struct Published {
    pub terminal: String,
    pub event_id: String,
    pub sign_time: u64,
    /// When the bridge took it (Unix ms, this machine's clock): freshness is judged by this,
    /// never by the terminal's clock.
    pub spooled_ms: u64,
    /// The record JSON, as published.
    pub json: String,
}

/// What the Home Assistant task takes.
#[derive(Debug)]
pub enum HaMsg {
    /// The broker accepted a connection (first or again).
    Connected,
    /// A message on a topic under the discovery prefix.
    Incoming {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
    /// What a terminal told us about itself.
    Device {
        terminal: String,
        details: DeviceDetails,
    },
}
