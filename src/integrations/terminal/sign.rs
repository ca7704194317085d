//! Request signing: `sign = lowercase hex md5("<timestamp ms>#<password>")`.
//!
//! The terminal checks that `timestamp` is within 5 minutes of its own clock, so a signature is
//! computed for every request and every retry, never cached.

use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

use crate::secret::Secret;

/// Milliseconds since the Unix epoch (UTC), as the terminal expects.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The signature for one request. The result is as secret as the password for five minutes:
/// keep it out of logs (callers only ever put it into a URL they do not print).
pub fn sign(timestamp_ms: u64, password: &Secret) -> String {
    let mut hasher = Md5::new();
    hasher.update(timestamp_ms.to_string().as_bytes());
    hasher.update(b"#");
    hasher.update(password.expose().as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `timestamp=..&sign=..` for a URL, with fresh values.
pub fn signed_query(password: &Secret) -> (u64, String) {
    let ts = now_ms();
    let s = sign(ts, password);
    (ts, format!("timestamp={ts}&sign={s}"))
}

/// Whether a signature presented to a terminal is valid and fresh: the simulator's check.
pub fn verify(timestamp_ms: u64, presented: &str, password: &Secret) -> bool {
    let expected = sign(timestamp_ms, password);
    // Constant-time enough for a simulator; the comparison length is fixed by md5.
    expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_vector_signs_as_the_document_says() {
        let pw = Secret::new("123456");
        assert_eq!(sign(1573539353795, &pw), "188ef735093645c802b0e4741bd3e9a1");
    }

    #[test]
    fn the_production_client_vector_signs_the_same() {
        let pw = Secret::new("123456");
        assert_eq!(sign(1599743858281, &pw), "cd4bc5c543c184551fd3dc548acde02d");
    }

    #[test]
    fn a_signature_verifies_only_with_the_same_password_and_time() {
        let pw = Secret::new("123456");
        let s = sign(1599743858281, &pw);
        assert!(verify(1599743858281, &s, &pw));
        assert!(verify(1599743858281, &s.to_uppercase(), &pw));
        assert!(!verify(1599743858282, &s, &pw));
        assert!(!verify(1599743858281, &s, &Secret::new("654321")));
        assert!(!verify(1599743858281, "abc", &pw));
    }

    fn ms_since_epoch(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64
    }

    #[test]
    fn now_ms_is_this_machine_s_wall_clock_in_milliseconds() {
        let before = ms_since_epoch(SystemTime::now());
        let now = now_ms();
        let after = ms_since_epoch(SystemTime::now());
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn a_signed_query_carries_a_fresh_timestamp_and_its_signature() {
        let pw = Secret::new("123456");
        let before = ms_since_epoch(SystemTime::now());
        let (ts, query) = signed_query(&pw);
        let after = ms_since_epoch(SystemTime::now());
        assert!(before <= ts && ts <= after, "{before} <= {ts} <= {after}");
        assert_eq!(query, format!("timestamp={ts}&sign={}", sign(ts, &pw)));
    }

    #[test]
    fn a_signature_with_two_of_its_characters_swapped_does_not_verify() {
        // Every byte is still there, so a check that folds the differences with XOR (where two
        // equal differences cancel) would take it.
        let pw = Secret::new("123456");
        let s = sign(1599743858281, &pw);
        assert_eq!(&s[..2], "cd");
        let swapped = format!("dc{}", &s[2..]);
        assert!(!verify(1599743858281, &swapped, &pw));
    }
}
