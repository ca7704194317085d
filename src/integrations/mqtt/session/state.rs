//! The session's decisions, without IO: when to withhold the subscriptions, when refused spool
//! entries are sent again and which refusals to say, and what goes out after every CONNACK and at
//! the end. Pure, on a clock the caller passes (`now`), so each rule is a plain `#[test]`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::messages::topics;

/// A connection that lasted this long clears the strikes.
pub const STEADY: Duration = Duration::from_secs(60);
/// Strikes before the subscriptions are withheld, and for how long.
pub const STRIKES: u32 = 2;
pub const WITHHOLD: Duration = Duration::from_secs(600);

/// One hostile message (a retained 10 MB payload on a request topic) would otherwise break every
/// connection right after it subscribes, and with it the delivery of every record. After
/// [`STRIKES`] such connections in a row, the session connects without subscribing for
/// [`WITHHOLD`]: records flow, commands are not heard, and the log says which message to clear.
#[derive(Debug, Default)]
pub struct Strikes {
    count: u32,
    withhold_until: Option<Instant>,
    up_since: Option<Instant>,
}

impl Strikes {
    /// A connection came up: whether to subscribe on it.
    pub fn connected(&mut self, now: Instant) -> bool {
        self.up_since = Some(now);
        if self.withhold_until.is_some_and(|t| now < t) {
            return false;
        }
        self.withhold_until = None;
        true
    }

    /// A connection went down (`oversized`: broken by a message too large to read). `true` when
    /// this starts withholding the subscriptions (to be said, once).
    pub fn down(&mut self, oversized: bool, now: Instant) -> bool {
        let steady = self
            .up_since
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= STEADY);
        if !oversized || steady {
            self.count = 0;
            return false;
        }
        self.count += 1;
        if self.count >= STRIKES && self.withhold_until.is_none() {
            self.withhold_until = Some(now + WITHHOLD);
            self.count = 0;
            return true;
        }
        false
    }
}

/// Publishes the broker refused (an ACL that forgot a topic, say): each topic is said once until
/// the broker accepts it again, and refused spool entries (which stay spooled) are sent again
/// after a wait that grows to a minute.
#[derive(Debug)]
pub struct Refusals {
    topics: BTreeSet<String>,
    retry_at: Option<Instant>,
    wait: Backoff,
}

impl Default for Refusals {
    fn default() -> Refusals {
        Refusals {
            topics: BTreeSet::new(),
            retry_at: None,
            wait: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

impl Refusals {
    /// A publish on `topic` was refused (`entry`: it carried a spool entry). `true` when the
    /// topic was not refused before (to be said).
    pub fn refused(&mut self, topic: &str, entry: bool, now: Instant) -> bool {
        if entry && self.retry_at.is_none() {
            self.retry_at = Some(now + self.wait.next_delay());
        }
        self.topics.insert(topic.to_string())
    }

    /// A publish on `topic` was accepted. `true` when it had been refused (to be said).
    pub fn accepted(&mut self, topic: &str) -> bool {
        if !self.topics.remove(topic) {
            return false;
        }
        self.wait.reset();
        true
    }

    /// Whether any topic stands refused (the session then looks up each ack's topic).
    pub fn any(&self) -> bool {
        !self.topics.is_empty()
    }

    /// When the spool is to be sent again from its oldest entry.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The retry is due and taken.
    pub fn retried(&mut self) {
        self.retry_at = None;
    }
}

/// What the broker must hold whatever happened to it: the bridge's state, each terminal's
/// availability, and the latest of each retained state the other tasks sent (the lock's, the
/// visitor passes'). Published again after every CONNACK: the broker may have restarted and lost
/// its retained messages.
#[derive(Debug)]
pub struct Retained {
    base: String,
    availability: BTreeMap<String, bool>,
    states: BTreeMap<String, Vec<u8>>,
}

/// A topic and its payload, retained.
pub type Publish = (String, Vec<u8>);

impl Retained {
    /// Every terminal starts offline.
    pub fn new(base: &str, terminals: &[String]) -> Retained {
        Retained {
            base: base.to_string(),
            availability: terminals.iter().map(|t| (t.clone(), false)).collect(),
            states: BTreeMap::new(),
        }
    }

    /// A terminal's link went up or down: its availability publish, and how many are up now.
    pub fn availability(&mut self, terminal: &str, online: bool) -> (Publish, usize) {
        self.availability.insert(terminal.to_string(), online);
        let up = self.availability.values().filter(|v| **v).count();
        (self.availability_of(terminal, online), up)
    }

    /// The latest state on `topic`, kept for the next CONNACK.
    pub fn state(&mut self, topic: String, payload: Vec<u8>) {
        self.states.insert(topic, payload);
    }

    /// After a CONNACK, in order: the bridge online, every terminal's availability, every state.
    pub fn after_connack(&self) -> Vec<Publish> {
        let mut out = vec![(
            topics::bridge_state(&self.base),
            br#"{"state":"online"}"#.to_vec(),
        )];
        out.extend(
            self.availability
                .iter()
                .map(|(t, online)| self.availability_of(t, *online)),
        );
        out.extend(self.states.iter().map(|(t, p)| (t.clone(), p.clone())));
        out
    }

    /// At the end: every terminal offline, then the bridge.
    pub fn at_shutdown(&self) -> Vec<Publish> {
        let mut out: Vec<Publish> = self
            .availability
            .keys()
            .map(|t| self.availability_of(t, false))
            .collect();
        out.push((
            topics::bridge_state(&self.base),
            br#"{"state":"offline"}"#.to_vec(),
        ));
        out
    }

    fn availability_of(&self, terminal: &str, online: bool) -> Publish {
        let payload: &[u8] = if online { b"online" } else { b"offline" };
        (topics::availability(&self.base, terminal), payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn two_connections_broken_by_an_oversized_message_withhold_the_subscriptions_for_ten_minutes() {
        let t0 = Instant::now();
        let mut s = Strikes::default();
        assert!(s.connected(t0));
        assert!(!s.down(true, t0 + S), "one strike");
        assert!(s.connected(t0 + 2 * S));
        assert!(s.down(true, t0 + 3 * S), "the second starts withholding");
        assert!(!s.connected(t0 + 4 * S), "not subscribing");
        assert!(!s.down(true, t0 + 5 * S), "said once");
        assert!(!s.connected(t0 + 3 * S + WITHHOLD - S));
        assert!(s.connected(t0 + 3 * S + WITHHOLD), "subscribing again");
    }

    #[test]
    fn a_connection_that_held_a_minute_clears_the_strikes() {
        let t0 = Instant::now();
        let mut s = Strikes::default();
        s.connected(t0);
        s.down(true, t0 + S);
        s.connected(t0 + 2 * S);
        assert!(!s.down(true, t0 + 2 * S + STEADY), "steady: no strike");
        s.connected(t0 + 3 * S + STEADY);
        assert!(
            !s.down(true, t0 + 4 * S + STEADY),
            "one strike again, not two"
        );
        s.connected(t0 + 5 * S + STEADY);
        assert!(s.down(true, t0 + 5 * S + STEADY + STEADY - S));
    }

    #[test]
    fn a_connection_lost_for_another_reason_clears_the_strikes() {
        let t0 = Instant::now();
        let mut s = Strikes::default();
        s.connected(t0);
        s.down(true, t0 + S);
        s.connected(t0 + 2 * S);
        assert!(!s.down(false, t0 + 3 * S));
        s.connected(t0 + 4 * S);
        assert!(!s.down(true, t0 + 5 * S), "the count started again");
        // A connection that never came up is not steady either.
        assert!(s.down(true, t0 + 6 * S + STEADY));
    }

    #[test]
    fn a_refused_topic_is_said_once_until_the_broker_accepts_it_again() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        assert!(!r.any());
        assert!(r.refused("b/t/record", true, t0));
        assert!(!r.refused("b/t/record", true, t0), "said once");
        assert!(
            r.refused("b/t/snapshot", false, t0),
            "another topic is said"
        );
        assert!(r.any());
        assert!(!r.accepted("b/t/other"), "never refused: nothing to say");
        assert!(r.accepted("b/t/record"));
        assert!(!r.accepted("b/t/record"));
        assert!(
            r.refused("b/t/record", true, t0),
            "refused again: said again"
        );
    }

    #[test]
    fn a_refused_spool_entry_is_sent_again_after_a_wait_that_grows_and_starts_over_on_acceptance() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        assert_eq!(r.retry_at(), None);
        r.refused("b/t/x", false, t0);
        assert_eq!(
            r.retry_at(),
            None,
            "not a spool entry: nothing to send again"
        );
        r.refused("b/t/record", true, t0);
        let first = r.retry_at().expect("a retry") - t0;
        assert!(first >= S / 2 && first <= S, "{first:?}");
        r.refused("b/t/record", true, t0 + S / 4);
        assert_eq!(r.retry_at(), Some(t0 + first), "one retry at a time");
        r.retried();
        let mut last = first;
        for _ in 0..10 {
            r.refused("b/t/record", true, t0);
            last = r.retry_at().expect("a retry") - t0;
            r.retried();
        }
        assert!(
            last >= 30 * S && last <= 60 * S,
            "grows to a minute: {last:?}"
        );
        r.accepted("b/t/record");
        r.refused("b/t/record", true, t0);
        assert!(r.retry_at().expect("a retry") - t0 <= S, "starts over");
    }

    #[test]
    fn after_every_connack_the_bridge_then_each_terminal_then_each_state_goes_out() {
        let mut k = Retained::new("b", &["door".into(), "gate".into()]);
        let ((topic, payload), up) = k.availability("gate", true);
        assert_eq!(
            (topic.as_str(), &payload[..], up),
            ("b/gate/availability", &b"online"[..], 1)
        );
        k.state("b/door/lock/state".into(), b"UNLOCKED".to_vec());
        k.state("b/door/lock/state".into(), b"LOCKED".to_vec());
        let out: Vec<(String, String)> = k
            .after_connack()
            .into_iter()
            .map(|(t, p)| (t, String::from_utf8(p).expect("text")))
            .collect();
        let want = [
            ("b/bridge/state", r#"{"state":"online"}"#),
            ("b/door/availability", "offline"),
            ("b/gate/availability", "online"),
            ("b/door/lock/state", "LOCKED"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(out, want);
        let (_, up) = k.availability("gate", false);
        assert_eq!(up, 0);
    }

    #[test]
    fn at_shutdown_every_terminal_then_the_bridge_goes_offline() {
        let mut k = Retained::new("b", &["door".into()]);
        k.availability("door", true);
        let out = k.at_shutdown();
        assert_eq!(
            out,
            vec![
                ("b/door/availability".to_string(), b"offline".to_vec()),
                (
                    "b/bridge/state".to_string(),
                    br#"{"state":"offline"}"#.to_vec()
                ),
            ]
        );
    }
}
