//! The broker side: one MQTT connection shared by everything the bridge publishes.
//!
//! - [`options`]: connection settings (also used by `face2mqtt check`) and failure wording;
//! - [`tls`]: the rustls client config and what a failed handshake means;
//! - [`driver`]: the task that polls rumqttc's event loop, alone;
//! - [`session`]: the task that owns the connection's state: what is in flight ([`acks`]),
//!   status and availability, messages from other tasks, and a [`session::Feed`] (the spool
//!   publisher) that fills the window;
//! - [`router`]: where messages on subscribed topics go (commands, Home Assistant).

pub mod acks;
pub mod driver;
pub mod link;
pub mod options;
pub mod pin;
pub mod router;
pub mod session;
pub mod tls;

pub use options::{connect, probe, round_trip};

/// Largest packet either way: room for a ~58 KB photo plus topic and headers, with margin for
/// larger captures. rumqttc's default is 10 KiB, which tears the connection down on the first
/// photo.
pub const MAX_PACKET: usize = 512 * 1024;

/// Largest packet we read: big enough to read (and refuse) a hostile message on a subscribed
/// topic rather than drop the connection over it; past it, see the session's strike rule.
pub const MAX_INCOMING: usize = 4 * 1024 * 1024;

/// Our own window of unacknowledged spool entries; rumqttc's `inflight` is set well above it so
/// its packet ids never wrap onto one still waiting for its PUBACK.
pub const WINDOW: usize = 16;
const CLIENT_INFLIGHT: u16 = 100;
