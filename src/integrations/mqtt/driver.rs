//! The one task that polls rumqttc's event loop.
//!
//! It polls alone (cancelling a poll can lose an ack) and forwards every event to the session.
//! On a failed connection it waits until the session has dropped its ack mapping and stopped
//! submitting, then clears rumqttc's leftovers, so no event of the dead connection is read after
//! the next CONNACK; rumqttc has no reconnect delay of its own, so it backs off here. What a
//! failure means for the next attempt is decided by [`Reconnect`], pure.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::link::{Client, Down, Ev, EventLoop, Version};
use super::tls::Setup;
use crate::backoff::Backoff;
use crate::config::{MqttConfig, MqttProtocol};

pub enum MqttEvent {
    Event(Ev),
    /// The connection failed. Reply on `quiet` once nothing more will be submitted until the next
    /// CONNACK.
    Down {
        down: Down,
        quiet: oneshot::Sender<()>,
    },
    /// The broker does not speak MQTT 5: from now on this client, of 3.1.1.
    Switched(Client),
}

/// A connection that lasted less than this after its CONNACK counts as broken off at once.
const SHORT: Duration = Duration::from_secs(5);
/// Connections in a row broken off at once before the broker is taken to be handing our
/// session to another client with our id (MQTT 5 says so outright, when rumqttc reads it).
const TAKEN_AFTER: u32 = 3;

/// Connects in a row closed before a CONNACK, without a word on the version, after which a
/// broker counts as one that does not speak MQTT 5.
const CLOSED_BEFORE_CONNACK: u32 = 3;

/// What the driver remembers between connections, and decides on each failure.
#[derive(Debug)]
pub struct Reconnect {
    protocol: MqttProtocol,
    version: Version,
    /// MQTT 5 worked once: a later failure is not a broker that cannot speak it.
    v5_worked: bool,
    up_since: Option<Instant>,
    short_in_a_row: u32,
    /// Connects in a row closed before a CONNACK with no word on the version.
    closed_before_connack: u32,
}

/// The decision after a failed connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Next {
    /// Start again from the shortest wait (the connection had been steady).
    pub reset_backoff: bool,
    /// Connect again with this version instead.
    pub switch_to: Option<Version>,
    /// Our client id is in use by another client.
    pub taken_over: bool,
}

impl Reconnect {
    pub fn new(protocol: MqttProtocol) -> Reconnect {
        Reconnect {
            protocol,
            version: Version::first(protocol),
            v5_worked: false,
            up_since: None,
            short_in_a_row: 0,
            closed_before_connack: 0,
        }
    }

    pub fn connected(&mut self, now: Instant) {
        self.up_since = Some(now);
        self.closed_before_connack = 0;
        if self.version == Version::V5 {
            self.v5_worked = true;
        }
    }

    pub fn failed(&mut self, down: &Down, now: Instant) -> Next {
        let lasted = self
            .up_since
            .take()
            .map(|t| now.saturating_duration_since(t));
        let steady = lasted.is_some_and(|d| d >= SHORT);
        if lasted.is_some() && !steady {
            self.short_in_a_row += 1;
        } else if steady {
            self.short_in_a_row = 0;
        }
        // Only a connect that got no CONNACK can be a broker that does not speak MQTT 5. A
        // close with no word on the version is also a broker restarting under us: once is not
        // enough (a bridge that fell back for that lost records to a later ACL refusal, which
        // 3.1.1 cannot tell: the soak saw it).
        let maybe = down.wrong_version
            && lasted.is_none()
            && self.protocol == MqttProtocol::Auto
            && self.version == Version::V5
            && !self.v5_worked;
        self.closed_before_connack = if maybe && !down.version_refused {
            self.closed_before_connack + 1
        } else {
            0
        };
        let switch_to = (maybe
            && (down.version_refused || self.closed_before_connack >= CLOSED_BEFORE_CONNACK))
            .then_some(Version::V311);
        if let Some(v) = switch_to {
            self.version = v;
        }
        Next {
            reset_backoff: steady || switch_to.is_some(),
            switch_to,
            // MQTT 5 says so (0x8E) when the DISCONNECT is read before the socket closes;
            // rumqttc often reports only the close.
            taken_over: down.taken_over || self.short_in_a_row >= TAKEN_AFTER,
        }
    }
}

/// Polls rumqttc's event loop until `stop`, with backoff between failed connections (rumqttc has
/// none of its own); under `mqtt.protocol = "auto"`, falls back to 3.1.1 once if the broker
/// does not speak MQTT 5.
pub async fn drive(
    mut eventloop: EventLoop,
    config: MqttConfig,
    events: mpsc::Sender<MqttEvent>,
    mut backoff: Backoff,
    setup: Setup,
    stop: CancellationToken,
) {
    let mut rules = Reconnect::new(config.protocol);
    loop {
        // `stop` comes only after the publisher has finished; losing a poll then loses nothing.
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            r = eventloop.poll(setup) => r,
        };
        match polled {
            Ok(event) => {
                let done = event == Ev::Disconnected;
                if event == Ev::ConnAck {
                    rules.connected(Instant::now());
                }
                if events.send(MqttEvent::Event(event)).await.is_err() || done {
                    return;
                }
            }
            Err(mut down) => {
                let next = rules.failed(&down, Instant::now());
                down.taken_over = next.taken_over;
                if next.reset_backoff {
                    backoff.reset();
                }
                let (quiet, quieted) = oneshot::channel();
                if events.send(MqttEvent::Down { down, quiet }).await.is_err() {
                    return;
                }
                let _ = quieted.await;
                if let Some(v) = next.switch_to {
                    match super::connect(&config, v, 1024) {
                        Ok((client, new)) => {
                            // A warning, not news: under 3.1.1 a publish the broker refuses
                            // (an ACL) is acknowledged like a delivered one, so such a loss is
                            // invisible from here from now on.
                            tracing::warn!("the broker does not speak MQTT 5; using {} (mqtt.protocol = \"3.1.1\" starts with it). Under {} a publish the broker refuses (an ACL) looks delivered: `face2mqtt check` tests the bridge's topics with a round trip", v.name(), v.name());
                            eventloop = new;
                            if events.send(MqttEvent::Switched(client)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::error!("cannot make a {} client: {e}", v.name()),
                    }
                }
                // Everything of the dead connection goes: we resend from the spool.
                eventloop.clean();
                let wait = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Down {
        Down {
            reason: "x".into(),
            oversized: false,
            taken_over: false,
            wrong_version: false,
            version_refused: false,
        }
    }

    fn wrong_version() -> Down {
        Down {
            wrong_version: true,
            version_refused: true,
            ..down()
        }
    }

    #[test]
    fn a_close_before_the_connack_once_is_a_broker_restarting_not_one_without_mqtt_5() {
        let mut r = Reconnect::new(MqttProtocol::Auto);
        let closed = Down {
            wrong_version: true,
            ..down()
        };
        assert_eq!(r.failed(&closed, Instant::now()).switch_to, None);
        // The broker is down meanwhile: refused connects are no sign either way.
        assert_eq!(r.failed(&down(), Instant::now()).switch_to, None);
        assert_eq!(r.failed(&closed, Instant::now()).switch_to, None);
        assert_eq!(r.failed(&closed, Instant::now()).switch_to, None);
        assert_eq!(r.version, Version::V5);
        assert_eq!(
            r.failed(&closed, Instant::now()).switch_to,
            Some(Version::V311),
            "three in a row: a broker that closes every MQTT 5 connect"
        );
    }

    #[test]
    fn auto_falls_back_to_3_1_1_when_the_broker_never_spoke_5() {
        let mut r = Reconnect::new(MqttProtocol::Auto);
        let next = r.failed(&wrong_version(), Instant::now());
        assert_eq!(next.switch_to, Some(Version::V311));
        assert_eq!(r.version, Version::V311);
        assert_eq!(r.failed(&wrong_version(), Instant::now()).switch_to, None);
    }

    #[test]
    fn a_broker_that_spoke_5_once_is_not_given_up_on() {
        let mut r = Reconnect::new(MqttProtocol::Auto);
        r.connected(Instant::now());
        assert_eq!(r.failed(&wrong_version(), Instant::now()).switch_to, None);
        assert_eq!(r.version, Version::V5);
    }

    #[test]
    fn a_protocol_set_to_5_never_falls_back() {
        let mut r = Reconnect::new(MqttProtocol::V5);
        assert_eq!(r.failed(&wrong_version(), Instant::now()).switch_to, None);
    }

    #[test]
    fn mqtt_5_says_when_the_session_was_taken_over() {
        let mut r = Reconnect::new(MqttProtocol::V5);
        let t = Instant::now();
        r.connected(t);
        let next = r.failed(
            &Down {
                taken_over: true,
                ..down()
            },
            t + Duration::from_secs(1),
        );
        assert!(next.taken_over);
        assert!(!next.reset_backoff, "the wait grows");
    }

    #[test]
    fn three_connections_closed_at_once_in_a_row_are_a_takeover() {
        let mut r = Reconnect::new(MqttProtocol::V311);
        let mut t = Instant::now();
        for i in 1..=3 {
            r.connected(t);
            t += Duration::from_secs(1);
            let next = r.failed(&down(), t);
            assert_eq!(next.taken_over, i == 3, "after {i}");
            assert!(!next.reset_backoff);
        }
    }

    #[test]
    fn a_steady_connection_resets_the_wait_and_the_count() {
        let mut r = Reconnect::new(MqttProtocol::V311);
        let mut t = Instant::now();
        for _ in 0..2 {
            r.connected(t);
            t += Duration::from_secs(1);
            r.failed(&down(), t);
        }
        r.connected(t);
        t += Duration::from_secs(60);
        let next = r.failed(&down(), t);
        assert!(next.reset_backoff && !next.taken_over);
        r.connected(t);
        t += Duration::from_secs(1);
        assert!(!r.failed(&down(), t).taken_over, "counting starts again");
    }

    #[test]
    fn a_failed_connect_neither_resets_the_wait_nor_counts_as_short() {
        let mut r = Reconnect::new(MqttProtocol::V311);
        for _ in 0..5 {
            let next = r.failed(&down(), Instant::now());
            assert!(!next.reset_backoff && !next.taken_over);
        }
    }
}
