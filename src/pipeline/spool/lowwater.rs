//! The low-water mark: per terminal, the time of the oldest record not yet acknowledged by the
//! broker (or, with none waiting, the backfill watermark). Kept outside sled, in a small file
//! replaced atomically, so that a spool sled lost or damaged (moved aside, entries missing) can be
//! refilled: at open, backfill is made to look back at least to this mark, and the terminal,
//! which keeps its records, hands back whatever the spool lost.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub type Marks = BTreeMap<String, u64>;

const FILE: &str = "lowwater.json";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The marks last written in `dir`; empty when there are none (a first run) or the file is not
/// readable (said in the log: the spool still works, it only loses this safety net).
pub fn read(dir: &Path) -> Marks {
    match fs::read(path(dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path(dir).display(), "the spool's low-water file is unreadable ({e}); ignored");
            Marks::new()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Marks::new(),
        Err(e) => {
            tracing::warn!(file = %path(dir).display(), "cannot read the spool's low-water file: {e}");
            Marks::new()
        }
    }
}

/// Replaces the file: written beside, synced, renamed over, directory synced. A crash leaves
/// the old marks or the new ones, never half a file.
pub fn write(dir: &Path, marks: &Marks) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(marks).map_err(io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, path(dir))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_written_are_read_back() {
        let d = tempfile::tempdir().expect("tempdir");
        let marks: Marks = [("front-door".to_string(), 1_700_000_000)].into();
        write(d.path(), &marks).expect("write");
        assert_eq!(read(d.path()), marks);
        assert!(!d.path().join("lowwater.json.tmp").exists());
    }

    #[test]
    fn a_missing_or_garbled_file_reads_as_no_marks() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(read(d.path()).is_empty());
        fs::write(path(d.path()), b"{garbage").expect("write");
        assert!(read(d.path()).is_empty());
    }
}
