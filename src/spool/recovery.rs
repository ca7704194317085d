//! What opening the spool repairs after a power cut: index entries whose frames in the log never
//! reached the disk. Its tests are the spool's (`a_record_whose_body_a_power_cut_lost_...`).

use std::path::Path;

use super::{bodies, key_seq, pending_parts, seen_prefix, seq_key, wm_key, SpoolError};

/// The trees that repair touches.
pub(super) struct Trees<'a> {
    pub records: &'a sled::Tree,
    pub pending: &'a sled::Tree,
    pub seen: &'a sled::Tree,
    pub meta: &'a sled::Tree,
}

/// Forgets the entries numbered `synced` and up whose bodies are not in the log as indexed:
/// sled's index reached the disk (sled also flushes on its own, every 500 ms) and the frame did
/// not (a power cut before the log's sync). Such a record was never reported durable, so the
/// terminal still has it: its index and dedupe keys go and its terminal's watermark is lowered
/// to it, so that backfill fetches it again.
pub(super) fn forget_unwritten(
    dir: &Path,
    t: &Trees<'_>,
    bodies: &bodies::Bodies,
    synced: u64,
) -> Result<usize, SpoolError> {
    let err = |source| SpoolError::Db {
        dir: dir.into(),
        source,
    };
    let mut lost = Vec::new();
    for item in t.records.range(seq_key(synced)..) {
        let (k, v) = item.map_err(err)?;
        let seq = key_seq(&k);
        let Some((at, key)) = bodies::Location::decode(&v) else {
            continue;
        };
        match bodies.read(seq, at) {
            Ok(Ok(_)) => {}
            Ok(Err(why)) => lost.push((seq, key.to_vec(), why)),
            Err(source) => {
                return Err(SpoolError::Log {
                    dir: dir.join("log"),
                    source,
                })
            }
        }
    }
    let forgotten = lost.len();
    for (seq, key, why) in lost {
        t.records.remove(seq_key(seq)).map_err(err)?;
        t.pending.remove(&key).map_err(err)?;
        let Some((terminal, sign_time)) = pending_parts(&key) else {
            continue;
        };
        let terminal = String::from_utf8_lossy(terminal);
        tracing::warn!(
            seq, terminal = %terminal, sign_time, reason = %why,
            "a spooled record did not reach the disk before a power cut (it was never reported received): backfill fetches it again from the terminal"
        );
        for k in t.seen.scan_prefix(seen_prefix(&terminal, sign_time)).keys() {
            t.seen.remove(k.map_err(err)?).map_err(err)?;
        }
        t.meta
            .fetch_and_update(wm_key(&terminal), |old| {
                let below = sign_time.saturating_sub(1);
                old.map(|o| key_seq(o).min(below).to_be_bytes().to_vec())
            })
            .map_err(err)?;
    }
    Ok(forgotten)
}
