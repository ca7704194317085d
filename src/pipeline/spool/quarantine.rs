//! Entries that can never be published as they are, kept aside with why, for a person: listed,
//! put back in the queue (once the cause is mended: a broker limit raised, an ACL fixed) or
//! dropped, with `face2mqtt spool quarantine` while the bridge is stopped.

use super::*;

/// A quarantined entry, as a person sees it.
#[derive(Debug)]
pub struct Quarantined {
    /// Its sequence number while it was queued.
    pub seq: u64,
    pub reason: String,
    /// The entry, or why what was kept of it does not read.
    pub entry: Result<Entry, String>,
}

/// Reason and entry of a `quarantine` value (`reason 0x00 entry`).
fn parts(v: &[u8]) -> (String, Result<Entry, String>) {
    match v.iter().position(|b| *b == 0) {
        Some(at) => (
            String::from_utf8_lossy(&v[..at]).into_owned(),
            entry::decode(&v[at + 1..]),
        ),
        None => (
            String::from_utf8_lossy(v).into_owned(),
            Err("nothing of it was kept".into()),
        ),
    }
}

impl Spool {
    /// Moves an entry that can never be published into the `quarantine` tree (with the reason),
    /// out of the queue. Its photo goes.
    pub fn quarantine(&self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let Some(v) = self.records.get(seq_key(seq)).map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let mut kept = reason.as_bytes().to_vec();
        kept.push(0);
        // The entry as stored, for a person to look at; what is left of it when it is damaged.
        match self.stored(seq, &v)? {
            None => return Ok(()),
            Some(Ok(body)) => kept.extend_from_slice(&body),
            Some(Err(why)) => {
                kept.extend_from_slice(format!("(unreadable: {why}) ").as_bytes());
                kept.extend_from_slice(&v);
            }
        }
        self.quarantine
            .insert(seq_key(seq), kept)
            .map_err(|e| self.err(e))?;
        self.quarantined.fetch_add(1, Ordering::SeqCst);
        self.ack(seq)
    }

    /// Entries in the quarantine tree.
    pub fn quarantined(&self) -> u64 {
        self.quarantined.load(Ordering::SeqCst)
    }

    /// Every quarantined entry, oldest first.
    pub fn quarantined_entries(&self) -> Result<Vec<Quarantined>, SpoolError> {
        self.quarantine
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let (reason, entry) = parts(&v);
                Ok(Quarantined {
                    seq: key_seq(&k),
                    reason,
                    entry,
                })
            })
            .collect()
    }

    /// Puts quarantined entry `seq` back at the end of the queue, as a new entry (published
    /// again; its photo went when it was quarantined), durably. `Ok(None)` when there is no such
    /// entry; an error when what was kept of it does not read.
    pub fn retry_quarantined(&self, seq: u64) -> Result<Option<u64>, SpoolError> {
        let Some(v) = self.quarantine.get(seq_key(seq)).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let entry = parts(&v)
            .1
            .map_err(|reason| SpoolError::Corrupt { seq, reason })?;
        let incoming = Incoming {
            event_id: entry.event_id,
            sign_time: entry.sign_time,
            json: entry.json,
            photo: None,
            backfill: false,
        };
        let encoded = Encoded::new(&entry.terminal, &incoming, entry.spooled_ms);
        // Its dedupe key is there (it was spooled once): not a duplicate of itself.
        let new = self.append_checked(&encoded, false)?;
        self.drop_quarantined(seq)?;
        self.flush()?;
        Ok(Some(new))
    }

    /// Forgets quarantined entry `seq`; whether there was one.
    pub fn drop_quarantined(&self, seq: u64) -> Result<bool, SpoolError> {
        let was = self
            .quarantine
            .remove(seq_key(seq))
            .map_err(|e| self.err(e))?
            .is_some();
        if was {
            sub_saturating(&self.quarantined, 1);
        }
        Ok(was)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_quarantined_entry_leaves_the_queue_with_its_reason_and_is_counted_across_a_reopen() {
        let d = tempfile::tempdir().expect("tempdir");
        let first;
        {
            let s = open(d.path());
            assert_eq!(s.quarantined(), 0);
            first = stored(
                s.append("t", &rec("t-1", 1), Some(&[0xFF, 0xD8, 1, 2]), true)
                    .expect("append"),
            );
            let second = stored(s.append("t", &rec("t-2", 2), None, true).expect("append"));
            s.quarantine(first, "undecodable").expect("quarantine");
            assert_eq!((s.len(), s.quarantined()), (1, 1));
            let left = queued(&s);
            assert_eq!(left, [second]);
            let kept = s
                .quarantine
                .get(seq_key(first))
                .expect("get")
                .expect("kept");
            assert!(kept.starts_with(b"undecodable\0{"), "{kept:?}");
            s.quarantine(second, "too large").expect("quarantine");
            assert_eq!((s.len(), s.quarantined()), (0, 2));
            s.quarantine(999, "gone").expect("nothing to quarantine");
            assert_eq!(s.quarantined(), 2);
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.quarantined(), 2);
        assert!(s.is_empty());
        assert_eq!(s.photo_disk.load(Ordering::SeqCst), 0, "the photo went too");
    }

    #[test]
    fn a_quarantined_entry_is_listed_put_back_in_the_queue_or_dropped() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        let a = stored(s.append("t", &rec("t-1", 1), None, true).expect("append"));
        let b = stored(s.append("t", &rec("t-2", 2), None, true).expect("append"));
        s.quarantine(a, "too large for the broker")
            .expect("quarantine");
        s.quarantine(b, "refused").expect("quarantine");
        let listed = s.quarantined_entries().expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].seq, a);
        assert_eq!(listed[0].reason, "too large for the broker");
        let entry = listed[0].entry.as_ref().expect("reads");
        assert_eq!(
            (entry.terminal.as_str(), entry.event_id.as_str()),
            ("t", "t-1")
        );

        let again = s.retry_quarantined(a).expect("retry").expect("there");
        assert!(again > b, "a new entry at the end of the queue");
        assert_eq!(queued(&s), [again]);
        let (_, back) = s.next_after(None, 1).expect("read").remove(0);
        assert_eq!(
            (back.event_id.as_str(), back.json.as_str()),
            ("t-1", entry.json.as_str())
        );
        assert_eq!(s.quarantined(), 1);
        assert_eq!(
            s.retry_quarantined(a).expect("retry"),
            None,
            "gone from quarantine"
        );

        assert!(s.drop_quarantined(b).expect("drop"));
        assert!(!s.drop_quarantined(b).expect("drop"));
        assert_eq!(s.quarantined(), 0);
        assert!(s.quarantined_entries().expect("list").is_empty());
    }

    #[test]
    fn an_unreadable_quarantined_entry_is_listed_with_why_and_cannot_be_retried() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.quarantine
            .insert(seq_key(7), &b"undecodable\0(unreadable: torn) x"[..])
            .expect("insert");
        s.quarantine
            .insert(seq_key(8), &b"no separator"[..])
            .expect("insert");
        let listed = s.quarantined_entries().expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].reason, "undecodable");
        assert!(listed[0].entry.is_err() && listed[1].entry.is_err());
        assert!(matches!(
            s.retry_quarantined(7),
            Err(SpoolError::Corrupt { seq: 7, .. })
        ));
    }
}
