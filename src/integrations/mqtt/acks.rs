//! Which spool entry a PUBACK confirms.
//!
//! rumqttc has no per-publish acknowledgement, only events in order: we submit publishes, it emits
//! `Outgoing::Publish(pkid)` as it sends each, and `Incoming::PubAck(pkid)` when the broker
//! acknowledges. [`AckTracker`] maps the three together. Every QoS 1 publish goes through it, or
//! the mapping would shift by one. Pure: no IO, unit-tested.

use std::collections::{HashMap, VecDeque};

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
    submitted: VecDeque<(Tag, Box<str>)>,
    sent: HashMap<u16, (Tag, Box<str>)>,
    /// Publishes still unacknowledged per spool entry.
    open: HashMap<u64, u32>,
}

impl AckTracker {
    /// A publish was handed to rumqttc (in the order it will send them); the topic is kept for
    /// what the broker may say of it.
    pub fn submitted_to(&mut self, tag: Tag, topic: &str) {
        if let Tag::Entry(seq) = tag {
            *self.open.entry(seq).or_default() += 1;
        }
        self.submitted.push_back((tag, topic.into()));
    }

    /// rumqttc sent the oldest submitted publish with this packet id. `false` if nothing was
    /// waiting (a publish we did not submit): the mapping can no longer be trusted.
    pub fn sent(&mut self, pkid: u16) -> bool {
        let Some(sent) = self.submitted.pop_front() else {
            return false;
        };
        self.sent.insert(pkid, sent);
        true
    }

    /// The topic of the publish sent as `pkid`, while it waits for its PUBACK.
    pub fn topic(&self, pkid: u16) -> Option<&str> {
        self.sent.get(&pkid).map(|(_, t)| &**t)
    }

    /// The broker acknowledged `pkid`. Returns the spool entry that is now fully published.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        let (Tag::Entry(seq), _) = self.sent.remove(&pkid)? else {
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

    /// The broker refused `pkid` (an MQTT 5 PUBACK ≥ 0x80). Its entry is no longer in flight
    /// and no other PUBACK of this connection completes it: it stays spooled, to be sent again.
    pub fn refused(&mut self, pkid: u16) -> Option<Tag> {
        let (tag, _) = self.sent.remove(&pkid)?;
        if let Tag::Entry(seq) = tag {
            self.open.remove(&seq);
        }
        Some(tag)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_puback_confirms_the_entry_its_publish_carried() {
        let mut t = AckTracker::default();
        t.submitted_to(Tag::Entry(7), "");
        t.submitted_to(Tag::Entry(8), "");
        assert!(t.sent(1));
        assert!(t.sent(2));
        assert_eq!(t.acked(2), Some(8));
        assert_eq!(t.acked(1), Some(7));
    }

    #[test]
    fn an_entry_with_a_photo_is_done_only_when_both_publishes_are_acknowledged() {
        let mut t = AckTracker::default();
        t.submitted_to(Tag::Entry(3), ""); // photo
        t.submitted_to(Tag::Entry(3), ""); // record
        t.sent(10);
        t.sent(11);
        assert_eq!(t.acked(11), None);
        assert_eq!(t.acked(10), Some(3));
    }

    #[test]
    fn status_messages_keep_the_mapping_in_step() {
        let mut t = AckTracker::default();
        t.submitted_to(Tag::Other, "");
        t.submitted_to(Tag::Entry(1), "");
        t.sent(1);
        t.sent(2);
        assert_eq!(t.acked(1), None);
        assert_eq!(t.acked(2), Some(1));
    }

    #[test]
    fn after_a_reset_stale_acks_confirm_nothing() {
        let mut t = AckTracker::default();
        t.submitted_to(Tag::Entry(1), "");
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
    fn a_refused_publish_leaves_its_entry_spooled_even_when_its_photo_was_accepted() {
        let mut t = AckTracker::default();
        t.submitted_to(Tag::Entry(4), "site/t/snapshot");
        t.submitted_to(Tag::Entry(4), "site/t/record");
        t.sent(1);
        t.sent(2);
        assert_eq!(t.topic(2), Some("site/t/record"));
        assert_eq!(t.refused(2), Some(Tag::Entry(4)));
        assert_eq!(t.acked(1), None, "the photo alone completes nothing");
        assert_eq!(t.entries_in_flight(), 0, "the window is free again");
        assert!(t.is_idle());
    }

    #[test]
    fn a_refused_photo_keeps_the_record_from_completing_the_entry() {
        let mut t = AckTracker::default();
        t.submitted_to(Tag::Entry(4), "");
        t.submitted_to(Tag::Entry(4), "");
        t.sent(1);
        t.sent(2);
        assert_eq!(t.refused(1), Some(Tag::Entry(4)));
        assert_eq!(t.acked(2), None);
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

    #[test]
    fn entries_stay_in_flight_until_their_last_publish_is_acknowledged() {
        let mut t = AckTracker::default();
        assert!(t.is_idle());
        t.submitted_to(Tag::Entry(1), "");
        t.submitted_to(Tag::Entry(1), "");
        t.submitted_to(Tag::Entry(2), "");
        t.submitted_to(Tag::Other, "");
        assert_eq!(t.entries_in_flight(), 2);
        assert!(!t.is_idle(), "submitted, not yet sent");
        for pkid in 1..=4 {
            assert!(t.sent(pkid));
        }
        assert!(!t.is_idle(), "sent, not yet acknowledged");
        assert_eq!(t.acked(1), None);
        assert_eq!(t.entries_in_flight(), 2);
        assert_eq!(t.acked(2), Some(1));
        assert_eq!(t.entries_in_flight(), 1);
        assert_eq!(t.acked(3), Some(2));
        assert_eq!(t.acked(4), None);
        assert_eq!(t.entries_in_flight(), 0);
        assert!(t.is_idle());
    }

    #[test]
    fn a_reset_forgets_publishes_submitted_but_not_yet_sent() {
        let mut t = AckTracker::default();
        t.submitted_to(Tag::Entry(1), "");
        t.reset();
        assert!(t.is_idle());
        assert!(!t.sent(1), "nothing left to map a send to");
    }
}
