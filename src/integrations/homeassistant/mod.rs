//! Home Assistant: discovery, its upkeep across HA and broker restarts, and the bridge's
//! diagnostics.
//!
//! One task, a consumer of the MQTT session's messages and the publisher's records. It announces
//! every entity after each CONNACK (the broker may have lost retained messages) and a moment
//! after HA says `online` on `<prefix>/status` (HA restarted and forgot everything not retained),
//! and sweeps: the session subscribes to every config topic of this bridge, and a retained one
//! that the current config does not produce (a removed terminal, a removed button, HA turned off)
//! is cleared with an empty retained payload. For every record that goes out it publishes the
//! retained `<base>/<t>/last_record` (HA's state sensors and dashboards read it; published with
//! HA off too) and, for fresh records, the Recognition event ([`event`]). The payloads are pure
//! ([`discovery`]).

pub mod discovery;
pub mod event;
mod lock;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{ButtonConfig, HomeAssistantConfig, TerminalConfig};
use crate::integrations::terminal::TerminalClient;
use crate::messages::{topics, DeviceDetails, HaMsg, Outbound, Published};
use crate::pipeline::clocks::Clocks;
use crate::pipeline::record::Record;
use crate::pipeline::spool::Spool;
use crate::stats::Stats;
use discovery::Site;
use event::FreshEvents;

/// The figures on `<base>/bridge/diagnostics`.
pub struct Diagnostics {
    pub spool: Arc<Spool>,
    pub max_bytes: u64,
    pub stats: Arc<Stats>,
    pub terminals: usize,
    pub clocks: Arc<Clocks>,
}

impl Diagnostics {
    pub fn payload(&self) -> Value {
        let oldest = self.spool.oldest_age();
        let connects = self.stats.connects.load(Ordering::Relaxed);
        json!({
            "spool_records": self.spool.len(),
            "spool_quarantined": self.spool.quarantined(),
            // The disk fails to take records (EIO), not merely full.
            "spool_failing": self.spool.is_failing(),
            "spool_bytes": self.spool.bytes(),
            "spool_max_bytes": self.max_bytes,
            "oldest_queued_age_s": oldest.map_or(0, |a| a.as_secs()),
            "broker_reconnects": connects.saturating_sub(1),
            "records_published": self.stats.published.load(Ordering::Relaxed),
            "broker_refusals": self.stats.refusals.load(Ordering::Relaxed),
            "broker_session_takeovers": self.stats.takeovers.load(Ordering::Relaxed),
            "terminals_online": self.stats.links_up.load(Ordering::Relaxed),
            "terminals": self.terminals,
            // Per terminal: its clock minus ours at its last live record, and how many records
            // it dated more than 5 minutes off.
            "terminal_clock_offset_s": self.clocks.iter().map(|(id, c)| (id.clone(), json!(c.offset_s()))).collect::<Map<String, Value>>(),
            "terminal_records_misdated": self.clocks.iter().map(|(id, c)| (id.clone(), json!(c.out_of_range()))).collect::<Map<String, Value>>(),
        })
    }
}

pub struct HomeAssistant {
    pub config: HomeAssistantConfig,
    pub base: String,
    pub terminals: Vec<TerminalConfig>,
    pub buttons: Vec<ButtonConfig>,
    pub inbox: mpsc::Receiver<HaMsg>,
    /// Every record the publisher sends.
    pub records: mpsc::Receiver<Published>,
    pub out: mpsc::Sender<Outbound>,
    pub diagnostics: Diagnostics,
    pub diagnostics_interval: Duration,
}

/// What the task remembers of the records it saw.
struct Records {
    /// Newest recognition time on the retained `<base>/<t>/last_record`, per terminal.
    last_time: HashMap<String, u64>,
    /// Decides which records fire the event entity; `None` when HA is off.
    fresh: Option<FreshEvents>,
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

    async fn send(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let message = Outbound::Message {
            topic,
            payload,
            retain,
        };
        // Only fails once the session has ended (shutdown).
        let _ = self.out.send(message).await;
    }

    async fn announce(&self, desired: &BTreeMap<String, Value>) {
        for (topic, payload) in desired {
            self.send(topic.clone(), payload.to_string().into_bytes(), true)
                .await;
        }
        if !desired.is_empty() {
            tracing::debug!(
                entities = desired.len(),
                "Home Assistant discovery published"
            );
        }
    }

    async fn publish_diagnostics(&self) {
        self.send(
            topics::diagnostics(&self.base),
            self.diagnostics.payload().to_string().into_bytes(),
            true,
        )
        .await;
    }

    /// The latest record, retained, so a dashboard (or HA after a restart) shows the last person
    /// at once; backfilled older records never replace a newer one. Then the event, after the
    /// record itself, so an automation that reads the record topic finds it.
    async fn on_record(&self, records: &mut Records, r: Published) {
        let newest = records
            .last_time
            .get(&r.terminal)
            .is_none_or(|t| r.sign_time >= *t);
        if newest {
            self.send(
                topics::last_record(&self.base, &r.terminal),
                r.json.clone().into_bytes(),
                true,
            )
            .await;
            records.last_time.insert(r.terminal.clone(), r.sign_time);
        }
        let Some(fresh) = records.fresh.as_mut() else {
            return;
        };
        let now_ms = crate::integrations::terminal::sign::now_ms();
        if !fresh.in_time(r.spooled_ms, now_ms) {
            tracing::debug!(event_id = %r.event_id, "held too long: no Home Assistant event");
            return;
        }
        let record = match Record::from_json(&r.json) {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(event_id = %r.event_id, "no Home Assistant event: {e}");
                return;
            }
        };
        let Some(payload) = fresh.fire(&record, r.spooled_ms, now_ms) else {
            tracing::debug!(event_id = %r.event_id, "not fresh (fetched, held too long, or already fired): no Home Assistant event");
            return;
        };
        let topic = topics::event(&self.base, &r.terminal);
        self.send(topic, payload, false).await;
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut details: HashMap<String, DeviceDetails> = HashMap::new();
        let mut desired = self.desired(&details);
        let status = topics::ha_status(&self.config.discovery_prefix);
        let mut records = Records {
            last_time: HashMap::new(),
            fresh: self
                .config
                .enabled
                .then(|| FreshEvents::new(self.config.max_event_age)),
        };
        let mut rediscover_at: Option<Instant> = None;
        let mut tick = tokio::time::interval(self.diagnostics_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = self.inbox.recv() => match msg {
                    None => return,
                    Some(HaMsg::Connected) => {
                        self.announce(&desired).await;
                        self.publish_diagnostics().await;
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
                            self.send(topic, Vec::new(), true).await;
                        }
                    }
                    Some(HaMsg::Device { terminal, details: d }) => {
                        if details.get(&terminal) != Some(&d) {
                            details.insert(terminal, d);
                            desired = self.desired(&details);
                            self.announce(&desired).await;
                        }
                    }
                },
                Some(r) = self.records.recv() => self.on_record(&mut records, r).await,
                _ = tokio::time::sleep_until(rediscover_at.unwrap_or_else(Instant::now)), if rediscover_at.is_some() => {
                    rediscover_at = None;
                    self.announce(&desired).await;
                    self.publish_diagnostics().await;
                }
                _ = tick.tick() => self.publish_diagnostics().await,
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
    let info = loop {
        let got = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.information() => r,
        };
        let e = match got {
            Ok(info) => break info,
            Err(e) => e,
        };
        let wait = backoff.next_delay();
        tracing::debug!(
            terminal,
            "device information not available yet ({e}); asking again in {wait:?}"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    };
    // The unit lives in the SmartFace settings; without them, Celsius as the document's default.
    let fahrenheit = match client.smart_face().await {
        // Firmware spells numbers as numbers or strings.
        Ok(o) => o
            .get("TempUnit")
            .is_some_and(|v| v.as_i64() == Some(1) || v.as_str().map(str::trim) == Some("1")),
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
    let _ = tx.send(HaMsg::Device { terminal, details }).await;
}
