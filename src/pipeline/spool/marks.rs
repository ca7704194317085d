//! The backfill watermark, the low-water mark, and the dedupe keys they bound.

use super::*;

/// The watermark after a record of `sign_time` was spooled, when it moves: up only, and never
/// past `limit` (this machine's now plus the allowed skew). One stored past the limit (while this
/// machine's clock was wrong) gives way to the first date that is not.
pub(super) fn raised(old: Option<u64>, sign_time: u64, limit: u64) -> Option<u64> {
    if sign_time > limit {
        return None;
    }
    let old = old.filter(|&o| o <= limit).unwrap_or(0);
    Some(old.max(sign_time))
}

impl Spool {
    /// Moves the terminal's watermark up (never down), and never past this machine's now plus
    /// the allowed skew: a record dated 2040 by a clock that jumped is published, but must not
    /// make every later backfill window end before it starts.
    pub fn advance_watermark(&self, terminal: &str, sign_time: u64) -> Result<(), SpoolError> {
        let limit = crate::pipeline::clocks::watermark_limit(now_ms() / 1000);
        if sign_time > limit {
            return Ok(());
        }
        self.meta
            .fetch_and_update(wm_key(terminal), |old| {
                raised(old.map(key_seq), sign_time, limit).map(|new| new.to_be_bytes().to_vec())
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The last signTime known to be spooled or published for this terminal.
    pub fn watermark(&self, terminal: &str) -> Result<Option<u64>, SpoolError> {
        Ok(self
            .meta
            .get(wm_key(terminal))
            .map_err(|e| self.err(e))?
            .map(|v| key_seq(&v)))
    }

    /// Per terminal, the oldest record not yet acknowledged, or the watermark when none waits.
    pub fn low_water(&self) -> Result<lowwater::Marks, SpoolError> {
        let mut marks = lowwater::Marks::new();
        for item in self.meta.scan_prefix(b"wm/") {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let terminal = String::from_utf8_lossy(&k[3..]).into_owned();
            marks.insert(terminal, key_seq(&v));
        }
        // One seek per terminal: its first pending key is its oldest.
        let mut from: Vec<u8> = Vec::new();
        while let Some(item) = self.pending.range(from.clone()..).next() {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let Some(end) = k.iter().position(|b| *b == 0) else {
                break;
            };
            let terminal = String::from_utf8_lossy(&k[..end]).into_owned();
            let oldest = key_seq(&k[end + 1..]);
            marks.insert(terminal, oldest);
            from = k[..end].to_vec();
            from.push(1);
        }
        Ok(marks)
    }

    /// Writes the low-water file (outside sled) when the marks changed since `last`.
    pub fn save_low_water(&self, last: &mut lowwater::Marks) -> Result<(), SpoolError> {
        let marks = self.low_water()?;
        if &marks != last {
            lowwater::write(&self.dir, &marks).map_err(|e| SpoolError::Photos {
                dir: lowwater::path(&self.dir),
                source: e,
            })?;
            *last = marks;
        }
        Ok(())
    }

    /// Lowers each terminal's watermark to the mark written when the bridge last ran, where the
    /// spool now starts later (it lost records, or is new after being moved aside).
    pub(super) fn look_back_to(&self, marks: &lowwater::Marks) -> Result<(), SpoolError> {
        let now = self.low_water()?;
        for (terminal, &mark) in marks {
            if now.get(terminal).is_some_and(|&n| n <= mark) {
                continue;
            }
            tracing::warn!(
                terminal = %terminal, since = mark,
                "the spool holds less than when the bridge last ran (damaged, or acknowledged just before a crash): backfill looks back to the oldest record then unacknowledged"
            );
            self.meta
                .insert(wm_key(terminal), &mark.to_be_bytes())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Forgets dedupe keys of records older than `before` (signTime): backfill never looks back
    /// that far again.
    pub fn prune_seen(&self, terminal: &str, before: u64) -> Result<u64, SpoolError> {
        let mut n = 0;
        for item in self
            .seen
            .range(seen_prefix(terminal, 0)..seen_prefix(terminal, before))
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            self.seen.remove(k).map_err(|e| self.err(e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_record_dated_past_now_and_the_skew_does_not_move_the_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(dir.path(), 1 << 30).expect("open");
        let now = now_ms() / 1000;
        s.append("t", &rec("a", now - 10), None, true)
            .expect("append");
        s.append("t", &rec("b", 2_208_988_800), None, true)
            .expect("a record from 2040 is still spooled");
        assert_eq!(s.watermark("t").expect("wm"), Some(now - 10));
        s.advance_watermark("t", now + 200).expect("advance");
        assert_eq!(
            s.watermark("t").expect("wm"),
            Some(now + 200),
            "within the skew it moves"
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_watermark_stored_in_the_future_gives_way_to_the_next_sane_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(dir.path(), 1 << 30).expect("open");
        s.meta
            .insert(wm_key("t"), &2_208_988_800u64.to_be_bytes())
            .expect("plant");
        let now = now_ms() / 1000;
        s.advance_watermark("t", now - 5).expect("advance");
        assert_eq!(s.watermark("t").expect("wm"), Some(now - 5));
    }

    #[test]
    fn the_watermark_only_moves_forward_and_only_when_asked() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("t", &rec("a", 200), None, true).expect("append");
        s.append("t", &rec("b", 100), None, true).expect("append");
        assert_eq!(s.watermark("t").expect("wm"), Some(200));
        s.append("t", &rec("c", 300), None, false).expect("append");
        assert_eq!(s.watermark("t").expect("wm"), Some(200));
        assert_eq!(s.watermark("other").expect("wm"), None);
    }

    #[test]
    fn pruning_forgets_only_old_dedupe_keys_of_that_terminal() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("a", &rec("a-old", 100), None, true)
            .expect("append");
        s.append("a", &rec("a-new", 500), None, true)
            .expect("append");
        s.append("b", &rec("b-old", 100), None, true)
            .expect("append");
        assert_eq!(s.prune_seen("a", 300).expect("prune"), 1);
        assert!(matches!(
            s.append("a", &rec("a-old", 100), None, true),
            Ok(Appended::Stored(_))
        ));
        assert_eq!(
            s.append("a", &rec("a-new", 500), None, true)
                .expect("append"),
            Appended::Duplicate
        );
        assert_eq!(
            s.append("b", &rec("b-old", 100), None, true)
                .expect("append"),
            Appended::Duplicate
        );
    }

    #[test]
    fn the_low_water_mark_is_the_oldest_unacknowledged_record_or_else_the_watermark() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        assert_eq!(s.low_water().expect("marks"), marks(&[]));
        s.append("a", &rec("a-1", 300), None, true).expect("append");
        s.append("a", &rec("a-2", 100), None, true).expect("append");
        let b1 = stored(s.append("b", &rec("b-1", 500), None, true).expect("append"));
        let b2 = stored(s.append("b", &rec("b-2", 400), None, true).expect("append"));
        s.append("c", &rec("c-1", 50), None, false).expect("append");
        assert_eq!(
            s.low_water().expect("marks"),
            marks(&[("a", 100), ("b", 400), ("c", 50)])
        );
        s.ack(b2).expect("ack");
        assert_eq!(s.low_water().expect("marks")["b"], 500);
        s.ack(b1).expect("ack");
        assert_eq!(
            s.low_water().expect("marks")["b"],
            500,
            "none waits: the watermark"
        );
    }

    #[test]
    fn the_low_water_file_is_written_when_the_marks_change() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        s.append("a", &rec("a-1", 100), None, true).expect("append");
        let mut last = lowwater::Marks::new();
        s.save_low_water(&mut last).expect("save");
        assert_eq!(last, marks(&[("a", 100)]));
        assert_eq!(lowwater::read(d.path()), marks(&[("a", 100)]));
        std::fs::remove_file(lowwater::path(d.path())).expect("remove");
        s.save_low_water(&mut last).expect("save");
        assert_eq!(
            lowwater::read(d.path()),
            marks(&[]),
            "unchanged: not written again"
        );
    }

    #[test]
    fn a_spool_that_lost_records_makes_backfill_look_back_to_the_last_low_water_mark() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            let old = stored(s.append("a", &rec("a-1", 100), None, true).expect("append"));
            s.append("a", &rec("a-2", 300), None, true).expect("append");
            s.save_low_water(&mut lowwater::Marks::new()).expect("save");
            // Acknowledged (or lost) after the marks were written.
            s.ack(old).expect("ack");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.watermark("a").expect("wm"), Some(100));

        let fresh = tempfile::tempdir().expect("tempdir");
        lowwater::write(fresh.path(), &marks(&[("b", 40)])).expect("marks");
        let s = open(fresh.path());
        assert_eq!(
            s.watermark("b").expect("wm"),
            Some(40),
            "an empty spool looks back too"
        );
    }

    #[test]
    fn a_spool_that_still_holds_the_low_water_record_keeps_its_watermark() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = open(d.path());
            s.append("a", &rec("a-1", 100), None, true).expect("append");
            s.append("a", &rec("a-2", 300), None, true).expect("append");
            s.save_low_water(&mut lowwater::Marks::new()).expect("save");
            s.flush().expect("flush");
        }
        let s = open(d.path());
        assert_eq!(s.watermark("a").expect("wm"), Some(300));
    }

    #[test]
    fn pruning_counts_every_dedupe_key_it_forgets() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        for (id, t) in [("a-1", 100), ("a-2", 200), ("a-3", 300)] {
            s.append("a", &rec(id, t), None, true).expect("append");
        }
        assert_eq!(s.prune_seen("a", 300).expect("prune"), 2);
        assert_eq!(s.prune_seen("a", 300).expect("prune"), 0);
    }
}
