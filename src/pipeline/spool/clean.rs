//! The mark a clean stop leaves: how many entries are queued, so that the next open need not
//! walk the index to count them (and to look for the orphaned photos only a crash leaves).
//!
//! It is the last write of a run and the first thing an open takes away (durably, before
//! anything else is written), so it is only ever read by the open right after that stop. It
//! also names the oldest and newest entry then queued: a spool changed by a bridge that does
//! not know the mark (a downgrade, then an upgrade again) shows as a mismatch, and is counted.

use sled::{Db, Tree};

/// `meta` key of the mark: count, first seq, last seq (u64 BE each; 0 for none).
const KEY: &[u8] = b"clean/count";

/// The first and last sequence numbers in `records` (0 when empty).
fn ends(records: &Tree) -> sled::Result<[u64; 2]> {
    let seq = |e: Option<(sled::IVec, sled::IVec)>| e.map_or(0, |(k, _)| super::key_seq(&k));
    Ok([seq(records.first()?), seq(records.last()?)])
}

fn encode(count: u64, ends: [u64; 2]) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&count.to_be_bytes());
    v[8..16].copy_from_slice(&ends[0].to_be_bytes());
    v[16..].copy_from_slice(&ends[1].to_be_bytes());
    v
}

/// Leaves the mark and makes it durable.
pub fn mark(db: &Db, meta: &Tree, records: &Tree, count: u64) -> sled::Result<()> {
    meta.insert(KEY, &encode(count, ends(records)?))?;
    db.flush()?;
    Ok(())
}

/// Takes the mark away (durably) and returns the count it holds, when there is one that still
/// describes `records`.
pub fn take(db: &Db, meta: &Tree, records: &Tree) -> sled::Result<Option<u64>> {
    let Some(v) = meta.remove(KEY)? else {
        return Ok(None);
    };
    db.flush()?;
    let Ok(v) = <[u8; 24]>::try_from(&*v) else {
        tracing::warn!("the spool's clean-stop mark is damaged; counting the queue");
        return Ok(None);
    };
    let count = super::key_seq(&v[..8]);
    let now = ends(records)?;
    // A number from the disk: no more entries than the sequence numbers between the ends.
    let most = if now == [0, 0] {
        0
    } else {
        now[1].saturating_sub(now[0]).saturating_add(1)
    };
    if count > most {
        tracing::warn!(
            count,
            "the spool's clean-stop mark is damaged; counting the queue"
        );
        return Ok(None);
    }
    if v != encode(count, now) {
        tracing::warn!(
            "the spool changed after its last clean stop (an older bridge ran on it?); counting the queue"
        );
        return Ok(None);
    }
    Ok(Some(count))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{open, rec, sled_waiting, stored};
    use super::*;

    /// A queue of two: three appended, the first acknowledged.
    fn two_queued(dir: &std::path::Path) -> super::super::Spool {
        let s = open(dir);
        for (i, t) in [(1, 100), (2, 200), (3, 300)] {
            stored(
                s.append("t", &rec(&format!("t-{i}"), t), None, true)
                    .expect("append"),
            );
        }
        s.flush().expect("flush");
        s.ack(1).expect("ack");
        s
    }

    /// Writes `key` → `value` into `tree` behind the spool's back.
    fn plant(dir: &std::path::Path, tree: &str, key: &[u8], value: &[u8]) {
        let db = sled_waiting(dir);
        db.open_tree(tree)
            .expect("tree")
            .insert(key, value)
            .expect("insert");
        db.flush().expect("flush");
    }

    /// A photo file that no entry names, put in behind the spool's back: a walk over the index
    /// removes it, a count taken from the mark does not look.
    fn plant_orphan_photo(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("photos").join(format!("{:020}.jpg", 99));
        std::fs::write(&path, b"orphan").expect("write");
        path
    }

    /// Opens the spool in `dir` with an orphaned photo planted: its count, and whether the open
    /// walked the index.
    fn reopened(dir: &std::path::Path) -> (u64, bool) {
        let orphan = plant_orphan_photo(dir);
        let len = open(dir).len();
        (len, !orphan.exists())
    }

    #[test]
    fn a_spool_stopped_cleanly_opens_with_the_count_it_left_and_only_once() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let s = two_queued(d.path());
            s.close().expect("close");
        }
        assert_eq!(
            reopened(d.path()),
            (2, false),
            "the mark's count, not a walk"
        );
        // The open took the mark away: a crash now must not leave it to be trusted again.
        assert_eq!(reopened(d.path()), (2, true), "walked");
    }

    #[test]
    fn a_spool_that_was_not_closed_is_counted_by_walking_its_index() {
        let d = tempfile::tempdir().expect("tempdir");
        drop(two_queued(d.path()));
        assert_eq!(reopened(d.path()), (2, true));
    }

    #[test]
    fn a_mark_that_no_longer_describes_the_queue_is_not_trusted() {
        // Entries appended or removed behind the spool's back move the queue's ends.
        for (change, left) in [("append", 3), ("ack the oldest", 1)] {
            let d = tempfile::tempdir().expect("tempdir");
            {
                let s = two_queued(d.path());
                s.close().expect("close");
            }
            {
                let db = sled_waiting(d.path());
                let records = db.open_tree("records").expect("tree");
                match change {
                    "append" => records.insert(super::super::seq_key(9), &b"{}"[..]),
                    _ => records.remove(super::super::seq_key(2)),
                }
                .expect("change");
                db.flush().expect("flush");
            }
            assert_eq!(reopened(d.path()), (left, true), "{change}");
        }
    }

    #[test]
    fn a_damaged_mark_is_not_trusted() {
        let d = tempfile::tempdir().expect("tempdir");
        drop(two_queued(d.path()));
        plant(d.path(), "meta", KEY, &[1, 2, 3]);
        assert_eq!(reopened(d.path()), (2, true), "walked");
    }

    #[test]
    fn a_mark_counting_more_entries_than_its_ends_hold_is_not_trusted() {
        let d = tempfile::tempdir().expect("tempdir");
        let ends = {
            let s = two_queued(d.path());
            ends(&s.records).expect("ends")
        };
        assert_eq!(ends, [2, 3]);
        for (count, trusted) in [(1, true), (3, false), (u64::MAX, false)] {
            plant(d.path(), "meta", KEY, &encode(count, ends));
            let want = if trusted { (count, false) } else { (2, true) };
            assert_eq!(reopened(d.path()), want, "count {count}");
        }
    }

    #[test]
    fn a_record_lost_by_the_disk_after_a_clean_stop_makes_the_count_walked() {
        let d = tempfile::tempdir().expect("tempdir");
        let (kept_len, b);
        {
            let s = open(d.path());
            stored(s.append("t", &rec("t-1", 100), None, true).expect("append"));
            s.flush().expect("flush");
            kept_len = s.bodies.bytes();
            b = stored(s.append("t", &rec("t-2", 200), None, true).expect("append"));
            s.flush().expect("flush");
            s.close().expect("close");
            // A disk that said it wrote the frame and did not.
            s.bodies.cut(b, kept_len);
        }
        assert_eq!(open(d.path()).len(), 1);
    }
}
