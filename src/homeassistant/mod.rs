//! Home Assistant: discovery, its upkeep across HA and broker restarts, and the bridge's
//! diagnostics.
//!
//! One task. It announces every entity after each CONNACK (the broker may have lost retained
//! messages) and a moment after HA says `online` on `<prefix>/status` (HA restarted and forgot
//! everything not retained), and sweeps: the publisher subscribes to every config topic of this
//! bridge, and a retained one that the current config does not produce (a removed terminal, a
//! removed button, HA turned off) is cleared with an empty retained payload. The payloads are
//! pure ([`discovery`]); events are decided in the publisher ([`event`]), where records go out.

pub mod discovery;
pub mod event;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{ButtonConfig, HomeAssistantConfig, TerminalConfig};
use crate::publish::{Outbound, Stats};
use crate::spool::Spool;
use crate::terminal::TerminalClient;
use discovery::{DeviceDetails, Site};

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

/// The figures on `<base>/bridge/diagnostics`.
pub struct Diagnostics {
    pub spool: Arc<Spool>,
    pub max_bytes: u64,
    pub stats: Arc<Stats>,
    pub terminals: usize,
}

impl Diagnostics {
    pub fn payload(&self) -> Value {
        let oldest = match self.spool.oldest_age() {
            Ok(age) => age.map(|a| a.as_secs()).unwrap_or(0),
            Err(e) => {
                tracing::warn!("cannot read the spool's oldest record: {e}");
                0
            }
        };
        let connects = self.stats.connects.load(Ordering::Relaxed);
        json!({
            "spool_records": self.spool.len(),
            "spool_bytes": self.spool.bytes(),
            "spool_max_bytes": self.max_bytes,
            "oldest_queued_age_s": oldest,
            "broker_reconnects": connects.saturating_sub(1),
            "records_published": self.stats.published.load(Ordering::Relaxed),
            "terminals_online": self.stats.links_up.load(Ordering::Relaxed),
            "terminals": self.terminals,
        })
    }
}

pub struct HomeAssistant {
    pub config: HomeAssistantConfig,
    pub base: String,
    pub terminals: Vec<TerminalConfig>,
    pub buttons: Vec<ButtonConfig>,
    pub inbox: mpsc::Receiver<HaMsg>,
    pub out: mpsc::UnboundedSender<Outbound>,
    pub diagnostics: Diagnostics,
    pub diagnostics_interval: Duration,
}

/// HA asks every integration to wait a little after `online`, so a restart is not met by every
/// device at the same instant.
fn rediscovery_delay() -> Duration {
    Duration::from_millis(fastrand::u64(500..=3000))
}

impl HomeAssistant {
    fn desired(&self, details: &HashMap<String, DeviceDetails>) -> BTreeMap<String, Value> {
        if !self.config.enabled {
            return BTreeMap::new();
        }
        let site = Site {
            prefix: &self.config.discovery_prefix,
            base: &self.base,
            terminals: &self.terminals,
            buttons: &self.buttons,
        };
        discovery::entities(&site, &|t| details.get(t).cloned())
            .into_iter()
            .map(|e| (e.topic, e.payload))
            .collect()
    }

    fn send(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let _ = self.out.send(Outbound::Message {
            topic,
            payload,
            retain,
        });
    }

    fn announce(&self, desired: &BTreeMap<String, Value>) {
        for (topic, payload) in desired {
            self.send(topic.clone(), payload.to_string().into_bytes(), true);
        }
        if !desired.is_empty() {
            tracing::debug!(
                entities = desired.len(),
                "Home Assistant discovery published"
            );
        }
    }

    fn publish_diagnostics(&self) {
        self.send(
            discovery::diagnostics_topic(&self.base),
            self.diagnostics.payload().to_string().into_bytes(),
            true,
        );
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut details: HashMap<String, DeviceDetails> = HashMap::new();
        let mut desired = self.desired(&details);
        let status = discovery::status_topic(&self.config.discovery_prefix);
        let mut rediscover_at: Option<Instant> = None;
        let mut tick = tokio::time::interval(self.diagnostics_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = self.inbox.recv() => match msg {
                    None => return,
                    Some(HaMsg::Connected) => {
                        self.announce(&desired);
                        self.publish_diagnostics();
                    }
                    Some(HaMsg::Incoming { topic, payload, retain }) => {
                        if topic == status {
                            if payload.trim_ascii() == b"online" && self.config.enabled {
                                let wait = rediscovery_delay();
                                tracing::info!("Home Assistant (re)started; announcing entities again in {wait:?}");
                                rediscover_at = Some(Instant::now() + wait);
                            }
                        } else if retain && !payload.is_empty() && !desired.contains_key(&topic) {
                            tracing::info!(topic, "removing a Home Assistant entity that the config no longer has");
                            self.send(topic, Vec::new(), true);
                        }
                    }
                    Some(HaMsg::Device { terminal, details: d }) => {
                        if details.get(&terminal) != Some(&d) {
                            details.insert(terminal, d);
                            desired = self.desired(&details);
                            self.announce(&desired);
                        }
                    }
                },
                _ = tokio::time::sleep_until(rediscover_at.unwrap_or_else(Instant::now)), if rediscover_at.is_some() => {
                    rediscover_at = None;
                    self.announce(&desired);
                    self.publish_diagnostics();
                }
                _ = tick.tick() => self.publish_diagnostics(),
            }
        }
    }
}

/// Asks a terminal about itself (model, firmware, serial, temperature unit) until it answers.
pub async fn fetch_details(
    terminal: String,
    client: TerminalClient,
    tx: mpsc::Sender<HaMsg>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
    loop {
        let got = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.information() => r,
        };
        match got {
            Ok(info) => {
                // The unit lives in the SmartFace settings; without them, Celsius as the
                // document's default.
                let fahrenheit = match client.smart_face().await {
                    // Firmware spells numbers as numbers or strings.
                    Ok(o) => o.get("TempUnit").is_some_and(|v| {
                        v.as_i64() == Some(1) || v.as_str().map(str::trim) == Some("1")
                    }),
                    Err(e) => {
                        tracing::debug!(terminal, "cannot read the temperature unit: {e}");
                        false
                    }
                };
                let sw_version = match (info.app_version, info.web_version) {
                    (Some(a), Some(w)) => Some(format!("{a} (web {w})")),
                    (a, w) => a.or(w),
                };
                let details = DeviceDetails {
                    model: info.model,
                    sw_version,
                    serial_number: info.device_id,
                    fahrenheit,
                };
                let _ = tx
                    .send(HaMsg::Device {
                        terminal: terminal.clone(),
                        details,
                    })
                    .await;
                return;
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::debug!(
                    terminal,
                    "device information not available yet ({e}); asking again in {wait:?}"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
