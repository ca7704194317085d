//! How the spool's sled keys are laid out, and read back.

pub(super) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(super) fn key_seq(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

pub(super) fn seen_prefix(terminal: &str, sign_time: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(terminal.len() + 9 + 48);
    k.extend_from_slice(terminal.as_bytes());
    k.push(0);
    k.extend_from_slice(&sign_time.to_be_bytes());
    k
}

pub(super) fn seen_key(terminal: &str, sign_time: u64, event_id: &str) -> Vec<u8> {
    let mut k = seen_prefix(terminal, sign_time);
    k.extend_from_slice(event_id.as_bytes());
    k
}

pub(super) fn pending_key(terminal: &str, sign_time: u64, seq: u64) -> Vec<u8> {
    let mut k = seen_prefix(terminal, sign_time);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number at the end of a `pending` key.
pub(super) fn pending_seq(key: &[u8]) -> u64 {
    key_seq(&key[key.len().saturating_sub(8)..])
}

/// The terminal and signTime a `pending` key names.
pub(super) fn pending_parts(key: &[u8]) -> Option<(&[u8], u64)> {
    let end = key.iter().position(|b| *b == 0)?;
    let time = key.get(end + 1..end + 9)?;
    Some((&key[..end], key_seq(time)))
}

pub(super) fn wm_key(terminal: &str) -> Vec<u8> {
    format!("wm/{terminal}").into_bytes()
}

/// `meta` key: the sequence number the log was synced up to (every entry below it has its body
/// on disk), written by each flush before sled's own.
pub(super) const LOG_SYNCED: &[u8] = b"log/synced";

/// `meta` key: the spool's format ([`FORMAT`], u32 BE), written when it is created.
pub(super) const FORMAT_KEY: &[u8] = b"format";

/// The one format this bridge reads and writes: the trees and keys of this module, entries in
/// the log as `bodies` frames them, `records` values as `bodies::Location`s. A spool in another
/// is refused with a clear error, never guessed at.
pub(super) const FORMAT: u32 = 1;

/// No sequence number gets near this (at 10,000 records/s, in millions of years): a mark above
/// it is damage.
pub(super) const MAX_SEQ: u64 = 1 << 62;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_key_gives_back_its_sequence_number_and_a_short_damaged_one_does_not_panic() {
        assert_eq!(pending_seq(&pending_key("door", 1_700_000_000, 42)), 42);
        assert_eq!(pending_seq(&pending_key("", 0, u64::MAX)), u64::MAX);
        assert_eq!(pending_seq(b""), 0);
        assert_eq!(pending_seq(&[1]), 1 << 56);
    }
}
