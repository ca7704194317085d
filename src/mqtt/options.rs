//! The broker connection's settings, shared by the daemon and `face2mqtt check`, and what a
//! failed connection means in words.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration,
    TlsError, Transport,
};

use super::tls::{self, Setup};
use super::{CLIENT_INFLIGHT, MAX_INCOMING, MAX_PACKET};
use crate::config::{BrokerAddr, MqttConfig};
use crate::messages::topics;

/// The connection's options; an error names the config key.
pub fn options(config: &MqttConfig) -> Result<MqttOptions, String> {
    let addr = BrokerAddr::parse(&config.url).map_err(|e| format!("mqtt.url: {e}"))?;
    let client_id = config
        .client_id
        .clone()
        .unwrap_or_else(|| "face2mqtt".into());
    // rumqttc checks the broker's certificate against this host: a DNS name or an IP address.
    let mut o = MqttOptions::new(client_id, addr.host, addr.port);
    if addr.tls {
        let tls = tls::client_config(&config.tls).map_err(|e| format!("mqtt.url: TLS: {e}"))?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    o.set_keep_alive(config.keep_alive.max(Duration::from_secs(1)));
    // The spool is the store of record: every reconnect starts a clean session and we resend.
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_INCOMING, MAX_PACKET);
    o.set_inflight(CLIENT_INFLIGHT);
    if let Some(user) = &config.username {
        let pw = config
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        o.set_credentials(user.clone(), pw);
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
        ConnectionError::Io(io) => format!("cannot reach the broker: {io}"),
        ConnectionError::Tls(TlsError::Io(io)) => format!("cannot reach the broker: {io}"),
        other => other.to_string(),
    }
}

/// Connects once and waits for the CONNACK: `face2mqtt check`'s broker test.
pub async fn probe(config: &MqttConfig, deadline: Duration) -> Result<(), String> {
    let mut o = options(config)?;
    let setup = Setup::of(&config.tls);
    // A distinct id, so checking does not kick the running daemon off the broker.
    o.set_client_id(format!("{}-check", o.client_id()));
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let result = tokio::time::timeout(deadline, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(explain(&e, setup)),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "no answer from the broker within {}",
            humantime::format_duration(deadline)
        ))
    });
    let _ = client.try_disconnect();
    result
}
