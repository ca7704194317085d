//! The broker connection's settings, shared by the daemon and `face2mqtt check`, and what a
//! failed connection means in words.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, LastWill, MqttOptions, QoS, TlsConfiguration, TlsError, Transport,
};

use rumqttc::v5;

use super::link::{Client, Ev, EventLoop, Version};
use super::tls::{self, Setup};
use super::{CLIENT_INFLIGHT, MAX_INCOMING, MAX_PACKET};
use crate::config::MqttConfig;
use crate::messages::topics;

/// A client and its event loop of `version`, with the connection's settings; an error names
/// the config key.
pub fn connect(
    config: &MqttConfig,
    version: Version,
    cap: usize,
) -> Result<(Client, EventLoop), String> {
    Ok(match version {
        Version::V311 => {
            let (client, mut eventloop) = AsyncClient::new(options(config)?, cap);
            // Packets are written whole; Nagle would hold a small PUBLISH behind an
            // unacknowledged one until the broker's delayed ACK (up to 40 ms).
            eventloop.network_options.set_tcp_nodelay(true);
            (Client::V311(client), EventLoop::V311(Box::new(eventloop)))
        }
        Version::V5 => {
            let (client, eventloop) = v5::AsyncClient::new(options_v5(config)?, cap);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
    })
}

/// `mqtt.client_id`, or the default.
fn client_id(config: &MqttConfig) -> String {
    config
        .client_id
        .clone()
        .unwrap_or_else(|| "face2mqtt".into())
}

/// The TLS transport for an `mqtts://` URL; an error names the config key.
fn tls_transport(config: &MqttConfig) -> Result<Option<Transport>, String> {
    if !config.url.addr().tls {
        return Ok(None);
    }
    let tls = tls::client_config(&config.tls).map_err(|e| format!("mqtt.url: TLS: {e}"))?;
    Ok(Some(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    ))))
}

/// The username and password, when there is a username.
fn credentials(config: &MqttConfig) -> Option<(String, String)> {
    let pw = config.password.as_ref().map(|p| p.expose().to_string());
    Some((config.username.clone()?, pw.unwrap_or_default()))
}

/// The MQTT 5 options: the same settings as [`options`].
fn options_v5(config: &MqttConfig) -> Result<v5::MqttOptions, String> {
    let addr = config.url.addr();
    let mut o = v5::MqttOptions::new(client_id(config), addr.host.clone(), addr.port);
    if let Some(t) = tls_transport(config)? {
        o.set_transport(t);
    }
    o.set_keep_alive(config.keep_alive.max(Duration::from_secs(1)));
    o.set_clean_start(true);
    o.set_max_packet_size(u32::try_from(MAX_INCOMING).ok());
    // Without an upper limit rumqttc sizes its window by the broker's receive maximum (65,535
    // for Mosquitto): ~14 MB of slots (dependency notes).
    o.set_outgoing_inflight_upper_limit(CLIENT_INFLIGHT);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    if let Some((user, pw)) = credentials(config) {
        o.set_credentials(user, pw);
    }
    o.set_last_will(v5::mqttbytes::v5::LastWill::new(
        topics::bridge_state(&config.base_topic),
        r#"{"state":"offline"}"#,
        v5::mqttbytes::QoS::AtLeastOnce,
        true,
        None,
    ));
    Ok(o)
}

/// The MQTT 3.1.1 options; an error names the config key.
pub fn options(config: &MqttConfig) -> Result<MqttOptions, String> {
    let addr = config.url.addr();
    // rumqttc checks the broker's certificate against this host: a DNS name or an IP address.
    let mut o = MqttOptions::new(client_id(config), addr.host.clone(), addr.port);
    if let Some(t) = tls_transport(config)? {
        o.set_transport(t);
    }
    o.set_keep_alive(config.keep_alive.max(Duration::from_secs(1)));
    // The spool is the store of record: every reconnect starts a clean session and we resend.
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_INCOMING, MAX_PACKET);
    o.set_inflight(CLIENT_INFLIGHT);
    if let Some((user, pw)) = credentials(config) {
        o.set_credentials(user, pw);
    }
    o.set_last_will(LastWill::new(
        topics::bridge_state(&config.base_topic),
        r#"{"state":"offline"}"#,
        QoS::AtLeastOnce,
        true,
    ));
    Ok(o)
}

/// Explains a connection failure for a person, in one line (never includes the password or
/// key material).
pub fn explain(e: &ConnectionError, setup: Setup) -> String {
    use rumqttc::ConnectReturnCode::*;
    if let Some(tls) = tls::find(e) {
        return tls::explain(tls, setup);
    }
    match e {
        ConnectionError::ConnectionRefused(BadUserNamePassword) => {
            "broker refused the login: bad username or password".into()
        }
        ConnectionError::ConnectionRefused(NotAuthorized) => {
            "broker refused: not authorized".into()
        }
        ConnectionError::ConnectionRefused(BadClientId) => "broker refused the client id".into(),
        ConnectionError::ConnectionRefused(code) => {
            format!("broker refused the connection ({code:?})")
        }
        ConnectionError::NetworkTimeout => "no answer from the broker".into(),
        ConnectionError::Io(io) | ConnectionError::Tls(TlsError::Io(io)) => {
            format!("cannot reach the broker: {io}")
        }
        other => other.to_string(),
    }
}

/// Connects once and waits for the CONNACK: `face2mqtt check`'s broker test. Under `auto`, a
/// broker that does not speak MQTT 5 is tried again with 3.1.1. Returns the version spoken.
pub async fn probe(config: &MqttConfig, deadline: Duration) -> Result<Version, String> {
    let first = Version::first(config.protocol);
    match probe_as(config, first, deadline).await {
        Err(d) if d.wrong_version && config.protocol == crate::config::MqttProtocol::Auto => {
            probe_as(config, Version::V311, deadline)
                .await
                .map_err(|d| d.reason)
        }
        Err(d) if d.wrong_version && first == Version::V5 => Err(format!(
            "{} before accepting an MQTT 5 connect; if it does not speak MQTT 5, set mqtt.protocol = \"auto\" or \"3.1.1\"",
            d.reason
        )),
        other => other.map_err(|d| d.reason),
    }
}

/// The config `face2mqtt check` connects with: a distinct client id, so checking does not kick
/// the running daemon off the broker.
fn checking(config: &MqttConfig) -> MqttConfig {
    MqttConfig {
        client_id: Some(format!("{}-check", client_id(config))),
        ..config.clone()
    }
}

async fn probe_as(
    config: &MqttConfig,
    version: Version,
    deadline: Duration,
) -> Result<Version, super::link::Down> {
    let setup = Setup::of(&config.tls);
    let down = |reason: String| super::link::Down {
        reason,
        ..Default::default()
    };
    let (client, mut eventloop) = connect(&checking(config), version, 10).map_err(down)?;
    let result = tokio::time::timeout(deadline, async {
        loop {
            match eventloop.poll(setup).await {
                Ok(Ev::ConnAck) => return Ok(version),
                Ok(_) => {}
                Err(d) => return Err(d),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(down(format!(
            "no answer from the broker within {}",
            humantime::format_duration(deadline)
        )))
    });
    client.try_disconnect();
    result
}

/// `face2mqtt check`'s second broker test: subscribes to what the daemon subscribes to (its
/// request and lock topics; retained messages there are read and ignored) and to a topic of its
/// own under the base topic, publishes to that and waits for the message to come back. Under MQTT 5 a refusal of
/// either (an ACL) is said with the broker's reason; under 3.1.1 only as a message that never
/// came back.
pub async fn round_trip(
    config: &MqttConfig,
    version: Version,
    deadline: Duration,
) -> Result<String, String> {
    let setup = Setup::of(&config.tls);
    let topic = format!("{}/bridge/check/{}", config.base_topic, client_id(config));
    let nonce = format!("check-{}", fastrand::u64(..));
    // What the daemon subscribes to, then our own topic: each SUBACK answers the oldest.
    let mut filters: std::collections::VecDeque<String> = [
        topics::request_filter(&config.base_topic),
        topics::lock_command_filter(&config.base_topic),
        topic.clone(),
    ]
    .into();
    let (client, mut eventloop) = connect(&checking(config), version, 10)?;
    let result = tokio::time::timeout(deadline, async {
        loop {
            match eventloop.poll(setup).await {
                Ok(Ev::ConnAck) => {
                    for f in &filters {
                        client.try_subscribe(f)?;
                    }
                }
                Ok(Ev::SubAck { refused, .. }) => {
                    let filter = filters.pop_front().unwrap_or_default();
                    if let Some((_, r)) = refused.first() {
                        return Err(format!("the broker refused the subscription to {filter}: {r} (check the broker's ACL: the bridge reads its request topics)"));
                    }
                    if filters.is_empty() {
                        client.try_publish(&topic, false, nonce.clone().into_bytes())?;
                    }
                }
                Ok(Ev::PubAck {
                    refused: Some(r), ..
                }) => {
                    return Err(format!("the broker refused a publish on {topic}: {r} (check the broker's ACL: the bridge writes under {}/)", config.base_topic));
                }
                Ok(Ev::Publish { topic: t, payload, .. }) if t == topic && payload == nonce.as_bytes() => {
                    return Ok(topic.clone());
                }
                Ok(_) => {}
                Err(d) => return Err(d.reason),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "published on {topic} but it did not come back within {} (an ACL that drops it?)",
            humantime::format_duration(deadline)
        ))
    });
    client.try_disconnect();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A broker of MQTT 3.1.1 only: it answers a CONNECT of protocol level 5 with 3.1.1's
    /// "unacceptable protocol version" and accepts one of level 4. Returns its port.
    async fn broker_of_3_1_1_only() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 512];
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    // Fixed header, remaining length (one byte here), "\0\x04MQTT", level.
                    let level = buf[..n].get(8).copied().unwrap_or(0);
                    let rc = if level == 4 { 0 } else { 1 };
                    let _ = s.write_all(&[0x20, 0x02, 0x00, rc]).await;
                    // A refusal closes the connection (MQTT 3.1.1, 3.2.2.3).
                    if rc == 0 {
                        let _ = s.read(&mut buf).await;
                    }
                });
            }
        });
        port
    }

    fn config(port: u16, protocol: &str) -> MqttConfig {
        crate::config::Config::parse(&format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\n[[terminal]]\nid = \"t\"\nhost = \"10.0.0.5\"\npassword = \"x\"\n"
        ))
        .expect("config")
        .mqtt
    }

    #[tokio::test]
    async fn auto_falls_back_to_3_1_1_with_a_broker_that_does_not_speak_5() {
        let port = broker_of_3_1_1_only().await;
        let spoken = probe(&config(port, "auto"), Duration::from_secs(5)).await;
        assert_eq!(spoken, Ok(Version::V311));
    }

    #[tokio::test]
    async fn protocol_5_says_the_broker_does_not_speak_it() {
        let port = broker_of_3_1_1_only().await;
        let e = probe(&config(port, "5"), Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(e.contains("MQTT 5"), "{e}");
    }
}
