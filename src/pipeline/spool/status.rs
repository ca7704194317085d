//! What the spool holds, for a person (`face2mqtt spool status`).

use std::fmt;

use super::*;

/// The spool's figures, read while no bridge has it open.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub dir: PathBuf,
    pub format: u32,
    pub entries: u64,
    /// How long the oldest queued entry has waited.
    pub oldest: Option<Duration>,
    /// What it takes on disk, against `spool.max_size`.
    pub bytes: u64,
    pub max_bytes: u64,
    /// Free for us on its file system.
    pub disk_free: Option<u64>,
    pub photos: u64,
    pub quarantined: u64,
    /// Per terminal: the backfill watermark and the low-water mark (signTime).
    pub marks: Vec<(String, Option<u64>, u64)>,
    /// Every entry below it has its frame on the disk.
    pub synced_below: u64,
}

impl Spool {
    pub fn status(&self) -> Result<Status, SpoolError> {
        let low = self.low_water()?;
        let marks = low
            .into_iter()
            .map(|(t, l)| Ok((t.clone(), self.watermark(&t)?, l)))
            .collect::<Result<_, SpoolError>>()?;
        let photos = self.photos.list().map_err(|e| self.photo_err(e))?.len() as u64;
        Ok(Status {
            dir: self.dir.clone(),
            format: FORMAT,
            entries: self.len(),
            oldest: self.oldest_age(),
            bytes: self.bytes(),
            max_bytes: self.max_bytes,
            disk_free: self.disk_free(),
            photos,
            quarantined: self.quarantined(),
            marks,
            synced_below: self.log_synced.load(Ordering::SeqCst),
        })
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A signTime as a date (UTC), and as it is.
fn date(sign_time: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(sign_time);
    format!("{} ({sign_time})", humantime::format_rfc3339_seconds(at))
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "spool        {} (format {})",
            self.dir.display(),
            self.format
        )?;
        write!(f, "queued       {} records", self.entries)?;
        match self.oldest {
            Some(age) => writeln!(
                f,
                ", the oldest spooled {} ago",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            )?,
            None => writeln!(f)?,
        }
        write!(
            f,
            "on disk      {} of {} (spool.max_size)",
            mib(self.bytes),
            mib(self.max_bytes)
        )?;
        match self.disk_free {
            Some(free) => writeln!(f, "; {} free on its file system", mib(free))?,
            None => writeln!(f)?,
        }
        writeln!(f, "photos       {}", self.photos)?;
        write!(f, "quarantined  {}", self.quarantined)?;
        if self.quarantined > 0 {
            write!(f, " (face2mqtt spool quarantine list)")?;
        }
        writeln!(f)?;
        for (terminal, watermark, low) in &self.marks {
            let wm = watermark.map_or_else(|| "none".into(), date);
            writeln!(
                f,
                "terminal     {terminal}: watermark {wm}, low-water mark {}",
                date(*low)
            )?;
        }
        write!(f, "synced       every entry below {}", self.synced_below)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_status_counts_what_is_queued_photographed_and_quarantined() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = open(d.path());
        stored(
            s.append("door", &rec("a", 1_700_000_000), Some(b"jpeg"), true)
                .expect("append"),
        );
        let b = stored(
            s.append("door", &rec("b", 1_700_000_100), None, true)
                .expect("append"),
        );
        s.quarantine(b, "refused").expect("quarantine");
        s.flush().expect("flush");
        let st = s.status().expect("status");
        assert_eq!((st.entries, st.photos, st.quarantined), (1, 1, 1));
        assert_eq!(
            st.marks,
            [("door".to_string(), Some(1_700_000_100), 1_700_000_000)]
        );
        assert_eq!(st.format, FORMAT);
        let text = st.to_string();
        for want in [
            "queued       1 records",
            "quarantined  1 (face2mqtt spool quarantine list)",
            "terminal     door: watermark 2023-11-14T22:15:00Z (1700000100), low-water mark 2023-11-14T22:13:20Z (1700000000)",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
