//! Entries that can never be published: kept aside, with why, for a person.

use super::*;

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
}
