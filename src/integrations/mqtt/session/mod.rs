//! The MQTT session: the one task that publishes and decides what the connection's events mean.
//!
//! After each CONNACK it subscribes (before saying `online`: the broker handles our packets in
//! order, so whoever sees `online` can be sure a request sent now is heard), publishes the bridge
//! state and every terminal's availability (the broker may have restarted and lost retained
//! state), and lets its [`Feed`] send everything still spooled, oldest first. On a lost
//! connection it forgets what was in flight: the spool is the store of record and resends.
//! Messages of other tasks ([`Outbound`]) go out while connected and are dropped otherwise,
//! except states (`Outbound::State`, the lock's), whose latest is kept and published after every
//! CONNACK like the availability.

mod state;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::acks::{AckTracker, Tag};
use super::driver::MqttEvent;
use super::link::{Client, Down, Ev, Refusal};
use super::router::Inbox;
use crate::messages::Outbound;
use crate::runtime::watchdog::{Heartbeat, BEAT};
use crate::stats::Stats;
use state::{Refusals, Retained, Strikes, WITHHOLD};

/// Where publishes go: the client, with every QoS 1 publish recorded in the ack tracker.
pub struct Sink<'a> {
    client: &'a Client,
    tracker: &'a mut AckTracker,
}

impl Sink<'_> {
    /// Queues a QoS 1 publish. `false` when rumqttc took nothing more (it is gone).
    pub fn submit(&mut self, topic: &str, payload: Vec<u8>, retain: bool, tag: Tag) -> bool {
        match self.client.try_publish(topic, retain, payload) {
            Ok(()) => {
                self.tracker.submitted_to(tag, topic);
                true
            }
            Err(e) => {
                // The request queue is sized far above our window; this means rumqttc is gone.
                tracing::error!(topic, "cannot queue a publish: {e}");
                false
            }
        }
    }

    /// Spool entries sent and not yet acknowledged.
    pub fn entries_in_flight(&self) -> usize {
        self.tracker.entries_in_flight()
    }
}

/// Events handled at once after the one that woke the session.
const EVENTS_AT_ONCE: usize = 64;

/// What the session publishes from the spool (the spool publisher implements it).
pub trait Feed: Send {
    /// Submits what is ready, up to the window.
    fn fill(&mut self, sink: &mut Sink<'_>) -> impl Future<Output = ()> + Send;
    /// Resolves when more may be ready to send; never, once nothing more will come.
    fn more(&mut self) -> impl Future<Output = ()> + Send;
    /// The broker acknowledged every publish of this spool entry.
    fn acked(&mut self, seq: u64);
    /// The events that were ready are handled (acknowledgements come in runs: one hand-off
    /// to the spool writer per run, not per entry).
    fn settled(&mut self);
    /// The connection is gone: start again from the oldest entry on the next one.
    fn reset(&mut self);
    /// The session ends.
    fn finish(&mut self);
}

pub struct Session<F> {
    pub client: Client,
    /// `mqtt.client_id`, named when another client takes the session over.
    pub client_id: String,
    pub base: String,
    pub terminals: Vec<String>,
    pub events: mpsc::Receiver<MqttEvent>,
    pub outbound: mpsc::Receiver<Outbound>,
    pub stats: Arc<Stats>,
    /// How long a shutdown waits for in-flight publishes.
    pub drain: Duration,
    pub inbox: Inbox,
    pub feed: F,
    pub heartbeat: Heartbeat,
}

struct State {
    connected: bool,
    tracker: AckTracker,
    /// What goes out after every CONNACK and at the end.
    retained: Retained,
    outbound_open: bool,
    /// Connections broken by a message too large to read, and the withholding they start.
    strikes: Strikes,
    /// The ack mapping went out of step (a bug): trust no ack and send nothing until the next
    /// connection. Entries stay spooled and are resent then: duplicates, never a loss.
    desynced: bool,
    /// Publishes the broker refused, and when refused entries are sent again.
    refusals: Refusals,
    /// Filters in the order their SUBSCRIBEs went out, to name a refused one.
    subscribing: std::collections::VecDeque<String>,
    /// Another client with our id holds the session (said once per episode).
    taken_over: bool,
}

impl<F: Feed> Session<F> {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut st = State {
            connected: false,
            tracker: AckTracker::default(),
            retained: Retained::new(&self.base, &self.terminals),
            outbound_open: true,
            strikes: Strikes::default(),
            desynced: false,
            refusals: Refusals::default(),
            subscribing: Default::default(),
            taken_over: false,
        };
        let mut tick = tokio::time::interval(BEAT);
        loop {
            self.heartbeat.beat();
            if st.connected && !st.desynced {
                let mut sink = Sink {
                    client: &self.client,
                    tracker: &mut st.tracker,
                };
                self.feed.fill(&mut sink).await;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                ev = self.events.recv() => match ev {
                    Some(ev) => {
                        self.on_event(&mut st, ev);
                        // What else is ready, in one go (bounded: the loop must beat).
                        for _ in 0..EVENTS_AT_ONCE {
                            let Ok(ev) = self.events.try_recv() else { break };
                            self.on_event(&mut st, ev);
                        }
                        self.feed.settled();
                    }
                    None => break, // the driver ended: nothing more can be published
                },
                _ = self.feed.more() => {}
                _ = sleep_until(st.refusals.retry_at()) => {
                    // Refused entries are still spooled: send everything again from the oldest.
                    st.refusals.retried();
                    self.feed.reset();
                }
                out = self.outbound.recv(), if st.outbound_open => match out {
                    Some(o) => self.on_outbound(&mut st, o),
                    None => st.outbound_open = false,
                },
            }
        }
        self.shut_down(st).await;
    }

    fn sink<'a>(&'a self, st: &'a mut State) -> Sink<'a> {
        Sink {
            client: &self.client,
            tracker: &mut st.tracker,
        }
    }

    fn on_event(&mut self, st: &mut State, ev: MqttEvent) {
        match ev {
            MqttEvent::Event(Ev::ConnAck) => self.on_connack(st),
            MqttEvent::Event(Ev::Publish {
                topic,
                payload,
                retain,
            }) => {
                tracing::trace!(topic = %topic, retain, bytes = payload.len(), "received");
                self.inbox.deliver(&topic, &payload, retain);
            }
            MqttEvent::Event(Ev::Sent(pkid)) => {
                if !st.tracker.sent(pkid) && !st.desynced {
                    tracing::error!(pkid, "a publish was sent that was never submitted; acks are ignored until the next connection");
                    st.desynced = true;
                }
            }
            MqttEvent::Event(Ev::PubAck { .. }) if st.desynced => {}
            MqttEvent::Event(Ev::PubAck {
                pkid,
                refused: Some(r),
            }) => self.on_refused(st, pkid, &r),
            MqttEvent::Event(Ev::PubAck {
                pkid,
                refused: None,
            }) => {
                if st.refusals.any() {
                    if let Some(topic) = st.tracker.topic(pkid) {
                        if st.refusals.accepted(topic) {
                            tracing::info!(
                                topic,
                                "the broker accepts publishes on this topic again"
                            );
                        }
                    }
                }
                if let Some(seq) = st.tracker.acked(pkid) {
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                    tracing::trace!(seq, pkid, "broker acknowledged; leaves the spool");
                    self.feed.acked(seq);
                }
            }
            MqttEvent::Event(Ev::SubAck { pkid, refused }) => {
                let filter = st.subscribing.pop_front().unwrap_or_default();
                if refused.is_empty() {
                    tracing::debug!(pkid, filter, "subscribed");
                }
                for (_, r) in refused {
                    self.stats.refusals.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(filter, reason = %r, "the broker refused the subscription to {filter}: {r}; requests on it are not heard (check the broker's ACL: the bridge needs to read it)");
                }
            }
            MqttEvent::Event(_) => {}
            MqttEvent::Switched(client) => self.client = client,
            MqttEvent::Down { down, quiet } => {
                self.on_down(st, &down);
                let _ = quiet.send(());
            }
        }
    }

    fn on_connack(&mut self, st: &mut State) {
        let n = self.stats.connects.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            tracing::info!(
                protocol = self.client.version().name(),
                "connected to the broker"
            );
        } else {
            tracing::info!(
                reconnects = n,
                "reconnected to the broker; resending what is still spooled"
            );
        }
        self.stats.broker_up.store(true, Ordering::Relaxed);
        st.connected = true;
        st.desynced = false;
        st.tracker.reset();
        self.feed.reset();
        st.subscribing.clear();
        if !st.strikes.connected(Instant::now()) {
            tracing::warn!("not subscribing (commands and Home Assistant's status are not heard) while a message too large to read sits on a subscribed topic");
        } else {
            for filter in self.inbox.subscriptions() {
                match self.client.try_subscribe(&filter) {
                    Ok(()) => st.subscribing.push_back(filter),
                    Err(e) => tracing::error!(filter, "cannot subscribe: {e}"),
                }
            }
        }
        self.inbox.connected();
        for (topic, payload) in st.retained.after_connack() {
            self.sink(st).submit(&topic, payload, true, Tag::Other);
        }
    }

    /// A publish the broker said no to (an ACL that forgot a topic, say). A spool entry stays
    /// spooled and everything is sent again after a wait that grows to a minute; the log names
    /// the topic once until the broker accepts it again.
    fn on_refused(&mut self, st: &mut State, pkid: u16, r: &Refusal) {
        let topic = st.tracker.topic(pkid).unwrap_or("?").to_string();
        let tag = st.tracker.refused(pkid);
        self.stats.refusals.fetch_add(1, Ordering::Relaxed);
        let entry = matches!(tag, Some(Tag::Entry(_)));
        if st.refusals.refused(&topic, entry, Instant::now()) {
            tracing::error!(topic, reason = %r, "the broker refused a publish on {topic}: {r}; records stay spooled and are sent again until it accepts them (check the broker's ACL: the bridge needs to write there)");
        } else {
            tracing::debug!(topic, reason = %r, "refused again");
        }
    }

    fn on_down(&mut self, st: &mut State, down: &Down) {
        if st.strikes.down(down.oversized, Instant::now()) {
            tracing::error!(
                "the broker sends a message larger than {} bytes on a subscribed topic (a retained request or discovery topic?), which breaks the connection; subscribing again in {}. Clear it with `mosquitto_pub -r -n -t <topic>`",
                super::MAX_INCOMING,
                humantime::format_duration(WITHHOLD)
            );
        }
        let reason = &down.reason;
        if down.taken_over {
            self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
            if !st.taken_over {
                tracing::error!(client_id = %self.client_id, "another client connected with this bridge's client id `{}` and took its session (the broker closes each connection right after accepting it: {reason}); give each bridge its own mqtt.client_id (a config copied to a second Pi keeps the first one's); retrying with a growing wait", self.client_id);
            }
        } else if st.connected {
            tracing::warn!("broker connection lost: {reason}");
        } else {
            tracing::warn!("cannot connect to the broker: {reason}");
        }
        st.taken_over = down.taken_over;
        st.connected = false;
        self.stats.broker_up.store(false, Ordering::Relaxed);
        st.tracker.reset();
        self.feed.reset();
    }

    fn on_outbound(&self, st: &mut State, out: Outbound) {
        match out {
            Outbound::Availability { terminal, online } => {
                let ((topic, payload), up) = st.retained.availability(&terminal, online);
                self.stats.links_up.store(up as u64, Ordering::Relaxed);
                if st.connected {
                    self.sink(st).submit(&topic, payload, true, Tag::Other);
                }
            }
            Outbound::State { topic, payload } => {
                if st.connected {
                    self.sink(st)
                        .submit(&topic, payload.clone(), true, Tag::Other);
                }
                st.retained.state(topic, payload);
            }
            Outbound::Message {
                topic,
                payload,
                retain,
            } => {
                if st.connected {
                    self.sink(st).submit(&topic, payload, retain, Tag::Other);
                } else {
                    tracing::debug!(topic, "broker unreachable; message dropped");
                }
            }
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
            for (topic, payload) in st.retained.at_shutdown() {
                self.sink(&mut st).submit(&topic, payload, true, Tag::Other);
            }
            let deadline = Instant::now() + Duration::from_millis(500);
            while st.connected && !st.tracker.is_idle() {
                match tokio::time::timeout_at(deadline, self.events.recv()).await {
                    Ok(Some(ev)) => self.on_event(&mut st, ev),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        self.client.try_disconnect();
        self.feed.finish();
    }
}

/// Resolves at `at`; never without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
