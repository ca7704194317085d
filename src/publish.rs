//! Spool → MQTT. A record leaves the spool only on the broker's PUBACK for the publish that
//! carried it.
//!
//! rumqttc has no per-publish acknowledgement, only events in order: we submit publishes, it emits
//! `Outgoing::Publish(pkid)` as it sends each, and `Incoming::PubAck(pkid)` when the broker
//! acknowledges. [`AckTracker`] maps the three together (pure, unit-tested). Every QoS 1 publish
//! goes through it, or the mapping would shift by one.
//!
//! Two tasks: [`drive`] polls rumqttc's event loop alone (cancelling a poll can lose an ack) and
//! forwards events; [`Publisher`] owns the tracker and decides what to send. On a disconnect the
//! driver waits until the publisher has dropped its mapping and stopped submitting, then clears
//! rumqttc's leftovers, so no event of the dead connection is read after the next CONNACK; after
//! each CONNACK everything still spooled is sent again, oldest first.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::command::{Incoming, RouterMsg};
use crate::homeassistant::event::FreshEvents;
use crate::homeassistant::{discovery, HaMsg};
use crate::mqtt::{self, MAX_PACKET, WINDOW};
use crate::spool::{Entry, Spool};
use crate::watchdog::{Heartbeat, BEAT};

/// What a publish carried, to know what its PUBACK confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Part of a spool entry (its photo or its record).
    Entry(u64),
    /// A status message; nothing to delete when it is acknowledged.
    Other,
}

#[derive(Debug, Default)]
pub struct AckTracker {
    submitted: VecDeque<Tag>,
    sent: HashMap<u16, Tag>,
    /// Publishes still unacknowledged per spool entry.
    open: HashMap<u64, u32>,
}

impl AckTracker {
    /// A publish was handed to rumqttc (in the order it will send them).
    pub fn submitted(&mut self, tag: Tag) {
        if let Tag::Entry(seq) = tag {
            *self.open.entry(seq).or_default() += 1;
        }
        self.submitted.push_back(tag);
    }

    /// rumqttc sent the oldest submitted publish with this packet id. `false` if nothing was
    /// waiting (a publish we did not submit): the mapping can no longer be trusted.
    pub fn sent(&mut self, pkid: u16) -> bool {
        match self.submitted.pop_front() {
            Some(tag) => {
                self.sent.insert(pkid, tag);
                true
            }
            None => false,
        }
    }

    /// The broker acknowledged `pkid`. Returns the spool entry that is now fully published.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        let Tag::Entry(seq) = self.sent.remove(&pkid)? else {
            return None;
        };
        let left = self.open.get_mut(&seq)?;
        *left -= 1;
        if *left == 0 {
            self.open.remove(&seq);
            Some(seq)
        } else {
            None
        }
    }

    /// The connection died: nothing in flight will be acknowledged any more.
    pub fn reset(&mut self) {
        self.submitted.clear();
        self.sent.clear();
        self.open.clear();
    }

    /// Spool entries sent and not yet confirmed.
    pub fn entries_in_flight(&self) -> usize {
        self.open.len()
    }

    pub fn is_idle(&self) -> bool {
        self.submitted.is_empty() && self.sent.is_empty()
    }
}

/// Messages other tasks want published.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// The terminal link went up or down (`<base>/<t>/availability`, retained).
    Availability { terminal: String, online: bool },
    /// Anything else; dropped while the broker is unreachable (a late answer is no answer).
    Message {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
}

pub enum MqttEvent {
    Event(Event),
    /// The connection failed. Reply on `quiet` once nothing more will be submitted until the next
    /// CONNACK.
    Down {
        reason: String,
        quiet: oneshot::Sender<()>,
    },
}

/// Counters and states for diagnostics and the status LED.
#[derive(Debug, Default)]
pub struct Stats {
    pub connects: AtomicU64,
    pub published: AtomicU64,
    pub broker_up: AtomicBool,
    /// Terminals whose record link is up.
    pub links_up: AtomicU64,
}

/// The publisher's side of Home Assistant.
pub struct HaLink {
    pub prefix: String,
    /// Where HA's status and our retained discovery configs go (see [`crate::homeassistant`]).
    pub tx: mpsc::Sender<HaMsg>,
    /// Decides which records fire the event entity; `None` when HA is off.
    pub fresh: Option<FreshEvents>,
}

/// Polls rumqttc's event loop until `stop`, with backoff between failed connections (rumqttc has
/// none of its own).
pub async fn drive(
    mut eventloop: EventLoop,
    events: mpsc::Sender<MqttEvent>,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
    loop {
        // `stop` comes only after the publisher has finished; losing a poll then loses nothing.
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            r = eventloop.poll() => r,
        };
        match polled {
            Ok(event) => {
                let done = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    backoff.reset();
                }
                if events.send(MqttEvent::Event(event)).await.is_err() || done {
                    return;
                }
            }
            Err(e) => {
                let (quiet, quieted) = oneshot::channel();
                if events
                    .send(MqttEvent::Down {
                        reason: mqtt::explain(&e),
                        quiet,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = quieted.await;
                // Everything of the dead connection goes: we resend from the spool.
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                let wait = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

pub struct Publisher {
    pub spool: Arc<Spool>,
    pub client: AsyncClient,
    pub base: String,
    pub terminals: Vec<String>,
    pub events: mpsc::Receiver<MqttEvent>,
    pub outbound: mpsc::UnboundedReceiver<Outbound>,
    /// The highest spool sequence that is durable; nothing above it is published.
    pub durable: watch::Receiver<u64>,
    pub stats: Arc<Stats>,
    /// How long a shutdown waits for in-flight publishes.
    pub drain: Duration,
    /// Where command requests go (`<base>/+/request/+` is subscribed after every CONNACK).
    pub commands: Option<mpsc::Sender<RouterMsg>>,
    pub ha: Option<HaLink>,
    pub heartbeat: Heartbeat,
}

struct State {
    connected: bool,
    /// Last spool sequence submitted on this connection.
    cursor: Option<u64>,
    tracker: AckTracker,
    availability: BTreeMap<String, bool>,
    /// Newest capture time whose photo went to the retained snapshot topic, per terminal.
    snapshot_time: HashMap<String, u64>,
    /// Newest recognition time on the retained `<base>/<t>/last_record`, per terminal.
    last_record_time: HashMap<String, u64>,
    outbound_open: bool,
    durable_open: bool,
    /// The ack mapping went out of step (a bug): trust no ack and send nothing until the next
    /// connection. Entries stay spooled and are resent then: duplicates, never a loss.
    desynced: bool,
    fresh: Option<FreshEvents>,
}

impl Publisher {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut st = State {
            connected: false,
            cursor: None,
            tracker: AckTracker::default(),
            availability: self.terminals.iter().map(|t| (t.clone(), false)).collect(),
            snapshot_time: HashMap::new(),
            last_record_time: HashMap::new(),
            outbound_open: true,
            durable_open: true,
            desynced: false,
            fresh: self.ha.as_mut().and_then(|h| h.fresh.take()),
        };
        let mut tick = tokio::time::interval(BEAT);
        loop {
            self.heartbeat.beat();
            if st.connected && !st.desynced {
                self.fill(&mut st);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_event(&mut st, ev),
                    None => return, // the driver ended: nothing more can be published
                },
                // The writer ends first on shutdown; what is durable then stays as it is.
                changed = self.durable.changed(), if st.durable_open => if changed.is_err() {
                    st.durable_open = false;
                },
                out = self.outbound.recv(), if st.outbound_open => match out {
                    Some(o) => self.on_outbound(&mut st, o),
                    None => st.outbound_open = false,
                },
            }
        }
        self.shut_down(st).await;
    }

    /// Sends spooled, durable entries until the window is full.
    fn fill(&self, st: &mut State) {
        while st.tracker.entries_in_flight() < WINDOW {
            let limit = *self.durable.borrow();
            let want = WINDOW - st.tracker.entries_in_flight();
            let batch = match self.spool.next_after(st.cursor, want) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("cannot read the spool: {e}");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            for (seq, entry) in batch {
                if seq > limit {
                    return;
                }
                if !self.send_entry(st, seq, &entry) {
                    return;
                }
                st.cursor = Some(seq);
            }
        }
    }

    /// Publishes one entry's photo (when it is the newest capture) and record.
    fn send_entry(&self, st: &mut State, seq: u64, entry: &Entry) -> bool {
        let photo = match self.spool.photo(seq, entry) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(event_id = %entry.event_id, "cannot read the photo from the spool: {e}");
                None
            }
        };
        // A photo spooled but gone now (size cap, torn file, too large to publish): the record
        // must not promise a snapshot that never comes.
        let mut photo_lost = entry.photo.is_some() && photo.is_none();
        if let Some(photo) = photo {
            let topic = format!("{}/{}/snapshot", self.base, entry.terminal);
            let newest = st
                .snapshot_time
                .get(&entry.terminal)
                .is_none_or(|t| entry.sign_time >= *t);
            if photo.len() + topic.len() + 16 > MAX_PACKET {
                tracing::warn!(terminal = %entry.terminal, event_id = %entry.event_id, size = photo.len(), "capture photo larger than the MQTT packet limit; not published");
                photo_lost = true;
            } else if newest {
                if !self.submit(st, &topic, photo, true, Tag::Entry(seq)) {
                    return false;
                }
                st.snapshot_time
                    .insert(entry.terminal.clone(), entry.sign_time);
            }
        }
        let json = photo_lost
            .then(|| crate::record::without_snapshot(&entry.json))
            .flatten()
            .unwrap_or_else(|| entry.json.clone());
        let topic = format!("{}/{}/record", self.base, entry.terminal);
        tracing::trace!(seq, event_id = %entry.event_id, "publishing");
        if !self.submit(
            st,
            &topic,
            json.clone().into_bytes(),
            false,
            Tag::Entry(seq),
        ) {
            return false;
        }
        // The latest record, retained, so a dashboard (or HA after a restart) shows the last
        // person at once. Backfilled older records never replace a newer one.
        let newest = st
            .last_record_time
            .get(&entry.terminal)
            .is_none_or(|t| entry.sign_time >= *t);
        if newest {
            let topic = discovery::last_record_topic(&self.base, &entry.terminal);
            self.submit(st, &topic, json.into_bytes(), true, Tag::Other);
            st.last_record_time
                .insert(entry.terminal.clone(), entry.sign_time);
        }
        self.fire_event(st, entry);
        true
    }

    /// The Home Assistant event for a fresh record (after the record itself, so an automation
    /// that reads the record topic finds it).
    fn fire_event(&self, st: &mut State, entry: &Entry) {
        let Some(fresh) = st.fresh.as_mut() else {
            return;
        };
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&entry.json) else {
            return;
        };
        let now = crate::terminal::sign::now_ms() / 1000;
        match fresh.fire(&record, now) {
            Some(payload) => {
                let topic = discovery::event_topic(&self.base, &entry.terminal);
                self.submit(st, &topic, payload, false, Tag::Other);
            }
            None if record["source"] == "live" && now.saturating_sub(entry.sign_time) > 300 => {
                tracing::warn!(terminal = %entry.terminal, event_id = %entry.event_id, age_s = now.saturating_sub(entry.sign_time), "a live record is old: the terminal's clock may be wrong (time sync needs this machine's clock synchronized)");
            }
            None => {
                tracing::debug!(event_id = %entry.event_id, "record too old (or already fired) for the Home Assistant event");
            }
        }
    }

    fn submit(
        &self,
        st: &mut State,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        tag: Tag,
    ) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => {
                st.tracker.submitted(tag);
                true
            }
            Err(e) => {
                // The request queue is sized far above our window; this means rumqttc is gone.
                tracing::error!(topic, "cannot queue a publish: {e}");
                false
            }
        }
    }

    fn on_event(&self, st: &mut State, ev: MqttEvent) {
        match ev {
            MqttEvent::Event(Event::Incoming(Packet::ConnAck(ack))) => {
                let n = self.stats.connects.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::info!("connected to the broker");
                } else {
                    tracing::info!(
                        reconnects = n,
                        "reconnected to the broker; resending what is still spooled"
                    );
                }
                let _ = ack;
                self.stats.broker_up.store(true, Ordering::Relaxed);
                st.connected = true;
                st.desynced = false;
                st.cursor = None;
                st.tracker.reset();
                // Subscribe before saying `online`: the broker handles our packets in order, so
                // whoever sees `online` can be sure a request sent now is heard.
                if self.commands.is_some() {
                    // Clean sessions: the subscription is gone after every reconnect.
                    let filter = format!("{}/+/request/+", self.base);
                    if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::error!("cannot subscribe to command requests: {e}");
                    }
                }
                if let Some(ha) = &self.ha {
                    for filter in [
                        discovery::status_topic(&ha.prefix),
                        discovery::sweep_filter(&ha.prefix, &self.base),
                    ] {
                        if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                            tracing::error!("cannot subscribe to Home Assistant topics: {e}");
                        }
                    }
                    if ha.tx.try_send(HaMsg::Connected).is_err() {
                        tracing::warn!("the Home Assistant task is behind; discovery waits for the next connect");
                    }
                }
                self.publish_status(st);
            }
            MqttEvent::Event(Event::Incoming(Packet::Publish(p))) => {
                tracing::trace!(topic = %p.topic, retain = p.retain, bytes = p.payload.len(), "received");
                if let Some(ha) = self.ha.as_ref().filter(|h| {
                    p.topic
                        .strip_prefix(h.prefix.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                }) {
                    // Our own discovery comes back live (retain=0) on the sweep subscription;
                    // only HA's status and retained replays mean anything.
                    let status = p.topic.ends_with("/status");
                    if !status && !p.retain {
                        return;
                    }
                    let msg = HaMsg::Incoming {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    };
                    if ha.tx.try_send(msg).is_err() {
                        tracing::warn!(topic = %p.topic, "the Home Assistant task is behind; a message was dropped");
                    }
                } else if let Some(tx) = &self.commands {
                    let msg = RouterMsg::Mqtt(Incoming {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        at: std::time::Instant::now(),
                    });
                    if tx.try_send(msg).is_err() {
                        tracing::warn!(topic = %p.topic, "too many command requests at once; one was dropped");
                    }
                }
            }
            MqttEvent::Event(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if !st.tracker.sent(pkid) && !st.desynced {
                    tracing::error!(pkid, "a publish was sent that was never submitted; acks are ignored until the next connection");
                    st.desynced = true;
                }
            }
            MqttEvent::Event(Event::Incoming(Packet::PubAck(_))) if st.desynced => {}
            MqttEvent::Event(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(seq) = st.tracker.acked(ack.pkid) {
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                    tracing::trace!(
                        seq,
                        pkid = ack.pkid,
                        "broker acknowledged; leaves the spool"
                    );
                    if let Err(e) = self.spool.ack(seq) {
                        tracing::error!("cannot remove a published record from the spool: {e}");
                    }
                }
            }
            MqttEvent::Event(Event::Incoming(Packet::SubAck(ack))) => {
                tracing::debug!(pkid = ack.pkid, codes = ?ack.return_codes, "subscribed");
            }
            MqttEvent::Event(_) => {}
            MqttEvent::Down { reason, quiet } => {
                if st.connected {
                    tracing::warn!("broker connection lost: {reason}");
                } else {
                    tracing::warn!("cannot connect to the broker: {reason}");
                }
                st.connected = false;
                self.stats.broker_up.store(false, Ordering::Relaxed);
                st.cursor = None;
                st.tracker.reset();
                let _ = quiet.send(());
            }
        }
    }

    fn on_outbound(&self, st: &mut State, out: Outbound) {
        match out {
            Outbound::Availability { terminal, online } => {
                st.availability.insert(terminal.clone(), online);
                let up = st.availability.values().filter(|v| **v).count();
                self.stats.links_up.store(up as u64, Ordering::Relaxed);
                if st.connected {
                    self.publish_availability(st, &terminal, online);
                }
            }
            Outbound::Message {
                topic,
                payload,
                retain,
            } => {
                if st.connected {
                    self.submit(st, &topic, payload, retain, Tag::Other);
                } else {
                    tracing::debug!(topic, "broker unreachable; message dropped");
                }
            }
        }
    }

    fn publish_availability(&self, st: &mut State, terminal: &str, online: bool) {
        let topic = format!("{}/{terminal}/availability", self.base);
        let payload = if online { "online" } else { "offline" };
        self.submit(st, &topic, payload.as_bytes().to_vec(), true, Tag::Other);
    }

    /// After every CONNACK: the broker may have restarted and lost retained state.
    fn publish_status(&self, st: &mut State) {
        self.submit(
            st,
            &mqtt::state_topic(&self.base),
            br#"{"state":"online"}"#.to_vec(),
            true,
            Tag::Other,
        );
        let all: Vec<(String, bool)> = st
            .availability
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (terminal, online) in all {
            self.publish_availability(st, &terminal, online);
        }
    }

    /// Waits a little for in-flight publishes, says `offline`, disconnects.
    async fn shut_down(mut self, mut st: State) {
        let deadline = Instant::now() + self.drain;
        while st.connected && st.tracker.entries_in_flight() > 0 {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => self.on_event(&mut st, ev),
                Ok(None) | Err(_) => break,
            }
        }
        if st.connected {
            for t in self.terminals.clone() {
                self.publish_availability(&mut st, &t, false);
            }
            self.submit(
                &mut st,
                &mqtt::state_topic(&self.base),
                br#"{"state":"offline"}"#.to_vec(),
                true,
                Tag::Other,
            );
            let deadline = Instant::now() + Duration::from_secs(2);
            while st.connected && !st.tracker.is_idle() {
                match tokio::time::timeout_at(deadline, self.events.recv()).await {
                    Ok(Some(ev)) => self.on_event(&mut st, ev),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let _ = self.client.try_disconnect();
        tracing::info!(left_in_spool = self.spool.len(), "publisher stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_puback_confirms_the_entry_its_publish_carried() {
        let mut t = AckTracker::default();
        t.submitted(Tag::Entry(7));
        t.submitted(Tag::Entry(8));
        assert!(t.sent(1));
        assert!(t.sent(2));
        assert_eq!(t.acked(2), Some(8));
        assert_eq!(t.acked(1), Some(7));
    }

    #[test]
    fn an_entry_with_a_photo_is_done_only_when_both_publishes_are_acknowledged() {
        let mut t = AckTracker::default();
        t.submitted(Tag::Entry(3)); // photo
        t.submitted(Tag::Entry(3)); // record
        t.sent(10);
        t.sent(11);
        assert_eq!(t.acked(11), None);
        assert_eq!(t.acked(10), Some(3));
    }

    #[test]
    fn status_messages_keep_the_mapping_in_step() {
        let mut t = AckTracker::default();
        t.submitted(Tag::Other);
        t.submitted(Tag::Entry(1));
        t.sent(1);
        t.sent(2);
        assert_eq!(t.acked(1), None);
        assert_eq!(t.acked(2), Some(1));
    }

    #[test]
    fn after_a_reset_stale_acks_confirm_nothing() {
        let mut t = AckTracker::default();
        t.submitted(Tag::Entry(1));
        t.sent(5);
        t.reset();
        assert_eq!(
            t.acked(5),
            None,
            "an ack of the dead connection must not delete anything"
        );
        assert_eq!(t.entries_in_flight(), 0);
        assert!(t.is_idle());
    }

    #[test]
    fn a_send_nobody_submitted_is_reported() {
        let mut t = AckTracker::default();
        assert!(!t.sent(1));
    }

    #[test]
    fn an_unknown_ack_is_ignored() {
        let mut t = AckTracker::default();
        assert_eq!(t.acked(99), None);
    }
}
