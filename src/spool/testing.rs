//! Helpers the spool's unit tests share.

use super::*;
use serde_json::json;

pub fn rec(id: &str, t: u64) -> Normalized {
    Normalized {
        event_id: id.into(),
        sign_time: t,
        json: json!({"event_id": id}),
        photo: None,
        photo_problem: None,
    }
}

/// Opens the spool in `dir`, also again after a `Spool` on it was dropped. sled lets go of
/// its file lock when its background threads drop their handles, which can be a moment after
/// the `Spool` is dropped: a reopen waits for that (up to a deadline) instead of failing.
pub fn open(dir: &Path) -> Spool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Spool::open(dir, 64 << 20) {
            Ok(s) => return s,
            Err(SpoolError::Db {
                source: sled::Error::Io(e),
                ..
            }) if e.to_string().contains("could not acquire lock")
                && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("opens: {e}"),
        }
    }
}

pub fn stored(a: Appended) -> u64 {
    match a {
        Appended::Stored(seq) => seq,
        Appended::Duplicate => panic!("expected a new entry"),
    }
}

/// Sequence numbers of the queued entries, oldest first.
pub fn queued(s: &Spool) -> Vec<u64> {
    s.next_after(None, 1000)
        .expect("read")
        .into_iter()
        .map(|(q, _)| q)
        .collect()
}

/// Files in the spool's log.
pub fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("log")).expect("log").count()
}

/// What an older bridge left: entry 1 (terminal `t`, signTime 7) stored whole in `records`,
/// with no log, and its `pending` key.
pub fn spooled_by_an_older_bridge(dir: &Path, value: &[u8]) {
    let db = sled::open(dir).expect("sled");
    db.open_tree("records")
        .expect("tree")
        .insert(seq_key(1), value)
        .expect("insert");
    db.open_tree("pending")
        .expect("tree")
        .insert(pending_key("t", 7, 1), &[])
        .expect("insert");
    db.flush().expect("flush");
}

pub fn marks(pairs: &[(&str, u64)]) -> lowwater::Marks {
    pairs.iter().map(|(t, m)| (t.to_string(), *m)).collect()
}
