//! One connection, MQTT 5 or 3.1.1: rumqttc's two clients behind one client, one event loop
//! and one event type, so the session and the driver decide the same way under both.
//!
//! MQTT 5 is the default because a broker can say no: a PUBACK with a reason code ≥ 0x80 (an
//! ACL that forgot a topic) and a DISCONNECT with a reason (a session taken over). Under 3.1.1
//! Mosquitto acknowledges a refused publish like a delivered one.

use rumqttc::v5;

use super::tls::Setup;
use crate::config::MqttProtocol;

/// The MQTT version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V5,
    V311,
}

impl Version {
    /// The first version to try for `mqtt.protocol`.
    pub fn first(p: MqttProtocol) -> Version {
        match p {
            MqttProtocol::Auto | MqttProtocol::V5 => Version::V5,
            MqttProtocol::V311 => Version::V311,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Version::V5 => "MQTT 5",
            Version::V311 => "MQTT 3.1.1",
        }
    }
}

/// A broker's "no", in its words: the reason code and rumqttc's name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u8,
    pub words: String,
}

impl Refusal {
    fn new(code: u8, words: impl std::fmt::Debug) -> Refusal {
        Refusal {
            code,
            words: format!("{words:?}"),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (0x{:02X})", self.words, self.code)
    }
}

/// What the connection did, the same for both versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    ConnAck,
    Publish {
        topic: String,
        payload: bytes::Bytes,
        retain: bool,
    },
    /// rumqttc sent the oldest publish we submitted, with this packet id.
    Sent(u16),
    /// The broker acknowledged `pkid`; `refused` when it said no (MQTT 5 only).
    PubAck {
        pkid: u16,
        refused: Option<Refusal>,
    },
    /// The broker answered a subscription; the filters it refused, by position (MQTT 5; 3.1.1's
    /// failure code 0x80 too).
    SubAck {
        pkid: u16,
        refused: Vec<(usize, Refusal)>,
    },
    /// Our DISCONNECT went out (the end of a clean stop).
    Disconnected,
    Other,
}

/// A failed connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Down {
    /// In words, for the log (never a password or key material).
    pub reason: String,
    /// The broker sent a message larger than we read.
    pub oversized: bool,
    /// The broker closed the session because another client connected with our id.
    pub taken_over: bool,
    /// The broker may not speak this version (3.1.1 only, say): it closed before a CONNACK.
    pub wrong_version: bool,
    /// ... and it said so, or answered what only another version reads: not a broker that
    /// was merely restarting (whose reset before the CONNACK looks the same otherwise).
    pub version_refused: bool,
}

/// The client handle: submits without waiting (the session never blocks on rumqttc).
#[derive(Clone)]
pub enum Client {
    V5(v5::AsyncClient),
    V311(rumqttc::AsyncClient),
}

impl Client {
    pub fn try_publish(&self, topic: &str, retain: bool, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Client::V5(c) => c
                .try_publish(topic, v5::mqttbytes::QoS::AtLeastOnce, retain, payload)
                .map_err(|e| e.to_string()),
            Client::V311(c) => c
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .map_err(|e| e.to_string()),
        }
    }

    pub fn try_subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V5(c) => c
                .try_subscribe(filter, v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V311(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    pub fn version(&self) -> Version {
        match self {
            Client::V5(_) => Version::V5,
            Client::V311(_) => Version::V311,
        }
    }

    pub fn try_disconnect(&self) {
        // An error only means the event loop is gone already.
        match self {
            Client::V5(c) => drop(c.try_disconnect()),
            Client::V311(c) => drop(c.try_disconnect()),
        }
    }
}

/// rumqttc's event loop of either version.
pub enum EventLoop {
    V5(Box<v5::EventLoop>),
    V311(Box<rumqttc::EventLoop>),
}

impl EventLoop {
    /// The next event, or why the connection failed. Poll it alone: cancelling a poll can lose
    /// an ack.
    pub async fn poll(&mut self, setup: Setup) -> Result<Ev, Down> {
        match self {
            EventLoop::V5(l) => match l.poll().await {
                Ok(ev) => Ok(from_v5(ev)),
                Err(e) => Err(down_v5(&e, setup)),
            },
            EventLoop::V311(l) => match l.poll().await {
                Ok(ev) => Ok(from_v311(ev)),
                Err(e) => Err(down_v311(&e, setup)),
            },
        }
    }

    /// Forgets everything of a dead connection: we resend from the spool.
    pub fn clean(&mut self) {
        match self {
            EventLoop::V5(l) => {
                l.clean();
                l.pending.clear();
                l.state.events.clear();
            }
            EventLoop::V311(l) => {
                l.clean();
                l.pending.clear();
                l.state.events.clear();
            }
        }
    }
}

fn from_v5(ev: v5::Event) -> Ev {
    use v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
    use v5::Event::{Incoming, Outgoing};
    match ev {
        Incoming(Packet::ConnAck(_)) => Ev::ConnAck,
        Incoming(Packet::Publish(p)) => Ev::Publish {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload,
            retain: p.retain,
        },
        Incoming(Packet::PubAck(a)) => {
            let refused = match a.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                r => Some(Refusal::new(puback_code(&r), r)),
            };
            Ev::PubAck {
                pkid: a.pkid,
                refused,
            }
        }
        Incoming(Packet::SubAck(a)) => Ev::SubAck {
            pkid: a.pkid,
            refused: a
                .return_codes
                .iter()
                .enumerate()
                .filter(|(_, c)| !matches!(c, SubscribeReasonCode::Success(_)))
                .map(|(i, c)| (i, Refusal::new(suback_code(c), c)))
                .collect(),
        },
        Outgoing(rumqttc::Outgoing::Publish(pkid)) => Ev::Sent(pkid),
        Outgoing(rumqttc::Outgoing::Disconnect) => Ev::Disconnected,
        _ => Ev::Other,
    }
}

fn from_v311(ev: rumqttc::Event) -> Ev {
    use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
    match ev {
        Event::Incoming(Packet::ConnAck(_)) => Ev::ConnAck,
        Event::Incoming(Packet::Publish(p)) => Ev::Publish {
            topic: p.topic,
            payload: p.payload,
            retain: p.retain,
        },
        Event::Incoming(Packet::PubAck(a)) => Ev::PubAck {
            pkid: a.pkid,
            refused: None,
        },
        Event::Incoming(Packet::SubAck(a)) => Ev::SubAck {
            pkid: a.pkid,
            refused: a
                .return_codes
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c, SubscribeReasonCode::Failure))
                .map(|(i, c)| (i, Refusal::new(0x80, c)))
                .collect(),
        },
        Event::Outgoing(Outgoing::Publish(pkid)) => Ev::Sent(pkid),
        Event::Outgoing(Outgoing::Disconnect) => Ev::Disconnected,
        _ => Ev::Other,
    }
}

fn puback_code(r: &v5::mqttbytes::v5::PubAckReason) -> u8 {
    use v5::mqttbytes::v5::PubAckReason::*;
    match r {
        Success => 0x00,
        NoMatchingSubscribers => 0x10,
        UnspecifiedError => 0x80,
        ImplementationSpecificError => 0x83,
        NotAuthorized => 0x87,
        TopicNameInvalid => 0x90,
        PacketIdentifierInUse => 0x91,
        QuotaExceeded => 0x97,
        PayloadFormatInvalid => 0x99,
    }
}

fn suback_code(c: &v5::mqttbytes::v5::SubscribeReasonCode) -> u8 {
    use v5::mqttbytes::v5::SubscribeReasonCode::*;
    match c {
        Success(q) => *q as u8,
        Failure | Unspecified => 0x80,
        ImplementationSpecific => 0x83,
        NotAuthorized => 0x87,
        TopicFilterInvalid => 0x8F,
        PkidInUse => 0x91,
        QuotaExceeded => 0x97,
        SharedSubscriptionsNotSupported => 0x9E,
        SubscriptionIdNotSupported => 0xA1,
        WildcardSubscriptionsNotSupported => 0xA2,
    }
}

fn down_v5(e: &v5::ConnectionError, setup: Setup) -> Down {
    use v5::mqttbytes::v5::{ConnectReturnCode as C, DisconnectReasonCode as D};
    use v5::{ConnectionError as E, StateError as S};
    let mut d = Down::default();
    if let Some(tls) = super::tls::find(e) {
        d.reason = super::tls::explain(tls, setup);
        return d;
    }
    d.reason = match e {
        E::ConnectionRefused(C::BadUserNamePassword) => {
            "broker refused the login: bad username or password".into()
        }
        E::ConnectionRefused(C::NotAuthorized) => "broker refused: not authorized".into(),
        E::ConnectionRefused(C::BadClientId | C::ClientIdentifierNotValid) => {
            "broker refused the client id (mqtt.client_id)".into()
        }
        E::ConnectionRefused(C::UnsupportedProtocolVersion | C::RefusedProtocolVersion) => {
            (d.wrong_version, d.version_refused) = (true, true);
            "the broker does not speak MQTT 5".into()
        }
        E::ConnectionRefused(code) => format!("broker refused the connection ({code:?})"),
        E::MqttState(S::ServerDisconnect {
            reason_code,
            reason_string,
        }) => {
            d.taken_over = *reason_code == D::SessionTakenOver;
            let why = reason_string
                .as_deref()
                .map(|s| format!(": {}", printable(s)))
                .unwrap_or_default();
            format!(
                "the broker closed the connection: {reason_code:?} (0x{:02X}){why}",
                *reason_code as u8
            )
        }
        E::MqttState(S::Deserialization(m)) => {
            d.oversized = matches!(m, v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. });
            // A 3.1.1-only broker answers a v5 CONNECT with a short 3.1.1 CONNACK.
            d.wrong_version = !d.oversized;
            d.version_refused = d.wrong_version;
            format!("the broker sent what MQTT 5 cannot read: {m}")
        }
        E::MqttState(S::IncomingPacketTooLarge { .. }) => {
            d.oversized = true;
            e.to_string()
        }
        E::NotConnAck(p) => {
            (d.wrong_version, d.version_refused) = (true, true);
            format!("the broker answered the connect with {p:?}")
        }
        E::Io(io) | E::Tls(v5::TlsError::Io(io)) => format!("cannot reach the broker: {io}"),
        // Before a CONNACK this is also how a 3.1.1-only broker ends a v5 CONNECT (the driver
        // decides; after one it is just a closed connection).
        E::MqttState(S::ConnectionAborted) => {
            d.wrong_version = true;
            "connection closed by the broker".into()
        }
        E::MqttState(S::Io(io)) => {
            d.wrong_version = true;
            match io.kind() {
                std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::UnexpectedEof => {
                    "connection closed by the broker".into()
                }
                _ => format!("connection to the broker failed: {io}"),
            }
        }
        E::Timeout(_) => "no answer from the broker".into(),
        other => other.to_string(),
    };
    d
}

/// A broker's reason string, short and printable, for one log line.
fn printable(s: &str) -> String {
    s.chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn down_v311(e: &rumqttc::ConnectionError, setup: Setup) -> Down {
    Down {
        reason: super::options::explain(e, setup),
        oversized: matches!(
            e,
            rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                rumqttc::Error::PayloadSizeLimitExceeded(_)
            ))
        ),
        ..Down::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v5::mqttbytes::v5::{Packet, PubAck, PubAckReason};

    fn puback(reason: PubAckReason) -> Ev {
        from_v5(v5::Event::Incoming(Packet::PubAck(PubAck {
            pkid: 7,
            reason,
            properties: None,
        })))
    }

    #[test]
    fn a_puback_that_says_not_authorized_is_a_refusal_with_its_code() {
        assert_eq!(
            puback(PubAckReason::NotAuthorized),
            Ev::PubAck {
                pkid: 7,
                refused: Some(Refusal {
                    code: 0x87,
                    words: "NotAuthorized".into()
                })
            }
        );
    }

    #[test]
    fn a_puback_with_no_subscribers_is_still_a_delivery() {
        assert_eq!(
            puback(PubAckReason::NoMatchingSubscribers),
            Ev::PubAck {
                pkid: 7,
                refused: None
            }
        );
    }

    #[test]
    fn a_refusal_reads_with_its_code_in_hex() {
        let r = Refusal {
            code: 0x87,
            words: "NotAuthorized".into(),
        };
        assert_eq!(r.to_string(), "NotAuthorized (0x87)");
    }

    #[test]
    fn auto_and_5_start_with_mqtt_5() {
        assert_eq!(Version::first(MqttProtocol::Auto), Version::V5);
        assert_eq!(Version::first(MqttProtocol::V5), Version::V5);
        assert_eq!(Version::first(MqttProtocol::V311), Version::V311);
    }
}
