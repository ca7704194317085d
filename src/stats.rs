//! Counters and states shared by the MQTT session (which sets them) and the diagnostics and the
//! status LED (which read them). Plain atomics: readers never wait on the writer.

use std::sync::atomic::{AtomicBool, AtomicU64};

#[derive(Debug, Default)]
pub struct Stats {
    /// CONNACKs received (the first connect included).
    pub connects: AtomicU64,
    /// Spool entries the broker acknowledged.
    pub published: AtomicU64,
    pub broker_up: AtomicBool,
    /// Terminals whose record link is up.
    pub links_up: AtomicU64,
    /// Publishes and subscriptions the broker refused (MQTT 5 reason codes).
    pub refusals: AtomicU64,
    /// Connections lost because another client took our client id's session.
    pub takeovers: AtomicU64,
}
