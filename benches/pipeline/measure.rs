//! What every scenario measures with: the scale, a process's figures from `/proc`, percentiles,
//! paced pushing through the simulator, and counting event ids at the subscriber.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use face2mqtt::integrations::terminal::PersonType;
use face2mqtt::simulator::Simulator;

use crate::common::Subscriber;

/// `BENCH_SCALE` (default 1): multiplies record counts and waits, for quick runs.
pub fn factor() -> f64 {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|f: &f64| *f > 0.0)
        .unwrap_or(1.0)
}

pub fn scale(n: usize) -> usize {
    ((n as f64 * factor()) as usize).max(10)
}

pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(factor().min(1.0)).max(Duration::from_secs(2))
}

/// A process's figures from `/proc/<pid>`.
#[derive(Clone, Copy)]
pub struct Proc(pub u32);

impl Proc {
    fn field(&self, file: &str, key: &str) -> u64 {
        crate::common::proc_field(self.0, file, key).unwrap_or(0)
    }

    /// Peak resident set (VmHWM), bytes.
    pub fn peak_rss(&self) -> u64 {
        self.field("status", "VmHWM:") * 1024
    }

    /// Resident set now (VmRSS), bytes.
    pub fn rss(&self) -> u64 {
        self.field("status", "VmRSS:") * 1024
    }

    /// Bytes this process caused to be sent to the block layer (fsyncs included).
    pub fn write_bytes(&self) -> u64 {
        self.field("io", "write_bytes:")
    }

    /// CPU time used, user + system.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).unwrap_or_default();
        // Fields after the command name (which may hold spaces): state is field 3, utime 14,
        // stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / clock_ticks())
    }
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Space a directory takes on disk (allocated blocks), recursively.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()) + m.blocks() * 512,
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The `p`-th percentile (0–100) of sorted values.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// The event id the bridge gives a simulator record of a known person (`id` is never 0 then).
pub fn event_id(terminal: &str, r: &serde_json::Value) -> String {
    format!("{terminal}-{}-{}", r["signTime"], r["id"])
}

/// Bytes of the capture photo a simulator record carries (decoded from its base64).
pub fn photo_bytes(r: &serde_json::Value) -> usize {
    let b64 = r["signAvatar"].as_str().unwrap_or("");
    (b64.len() / 4 * 3).saturating_sub(b64.bytes().rev().take_while(|b| *b == b'=').count())
}

/// A pushed record: its event id, when, and its photo's size.
pub struct Pushed {
    pub id: String,
    pub at: Instant,
    pub photo: usize,
}

/// Frames a link may have waiting before we push more: well below the simulator's queue
/// (16,384), beyond which a slow link skips frames.
const QUEUE_LIMIT: usize = 8192;

/// Pushes `n` staff records (unique ids) as fast as the simulator prints them, without letting
/// a link fall so far behind that it skips frames. `photo(i)` says whether record `i` has one.
pub async fn push_many(
    sim: &Simulator,
    terminal: &str,
    n: usize,
    photo: impl Fn(usize) -> bool,
) -> Vec<Pushed> {
    let mut out = Vec::with_capacity(n);
    let mut photos = None;
    for i in 0..n {
        while sim.queued_pushes() > QUEUE_LIMIT {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let p = photo(i);
        if photos != Some(p) {
            sim.set_photos(p);
            photos = Some(p);
        }
        let r = sim.push(Some(PersonType::Staff));
        out.push(Pushed {
            id: event_id(terminal, &r),
            at: Instant::now(),
            photo: photo_bytes(&r),
        });
        if i % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    out
}

/// Waits until the simulator has sent every frame and `taken()` (records the receiver has
/// taken) reaches `n`, then a second more for the last group commit. Returns when both held.
pub async fn wait_taken(
    sim: &Simulator,
    n: usize,
    mut taken: impl FnMut() -> usize,
    deadline: Duration,
) -> Instant {
    let start = Instant::now();
    loop {
        if sim.queued_pushes() == 0 && taken() >= n {
            let at = Instant::now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            return at;
        }
        if start.elapsed() > deadline {
            eprintln!(
                "warning: {} of {n} records taken after {deadline:?}; going on",
                taken()
            );
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log level that makes a bridge say what it has taken: each live record, and how many
/// each backfill fetched.
pub const TAKEN_LOG: &str =
    "info,face2mqtt::pipeline::ingest=debug,face2mqtt::pipeline::backfill=info";

/// Records a bridge logged as taken (at [`TAKEN_LOG`]), read incrementally from its log.
pub struct TakenInLog {
    path: PathBuf,
    offset: u64,
    rest: String,
    count: usize,
}

impl TakenInLog {
    pub fn new(path: &Path) -> TakenInLog {
        TakenInLog {
            path: path.to_path_buf(),
            offset: 0,
            rest: String::new(),
            count: 0,
        }
    }

    pub fn count(&mut self) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return self.count;
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return self.count;
        }
        self.offset += buf.len() as u64;
        self.rest.push_str(&String::from_utf8_lossy(&buf));
        let Some(end) = self.rest.rfind('\n') else {
            return self.count;
        };
        for line in self.rest[..end].lines() {
            if line.contains("record received") {
                self.count += 1;
            } else if line.contains("backfill fetched") {
                self.count += line
                    .split("records=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
            }
        }
        self.rest.drain(..=end);
        self.count
    }
}

/// Arrival time of each distinct record seen at `sub`, until `expected` have arrived or
/// nothing has come for `idle`. `id_of` reads the event id from a message (None: not a record).
/// Each scenario has its own broker and simulator, so every record seen is one it pushed.
pub async fn collect(
    sub: &mut Subscriber,
    expected: usize,
    idle: Duration,
    id_of: fn(&[u8]) -> Option<String>,
) -> Arrivals {
    let mut at = HashMap::new();
    let mut payload_bytes = HashMap::new();
    while at.len() < expected {
        let Ok(Some((_, payload, _))) = tokio::time::timeout(idle, sub.rx.recv()).await else {
            break;
        };
        let Some(id) = id_of(&payload) else { continue };
        if let std::collections::hash_map::Entry::Vacant(e) = at.entry(id.clone()) {
            e.insert(Instant::now());
            payload_bytes.insert(id, payload.len());
        }
    }
    let last = at.values().max().copied();
    Arrivals {
        at,
        payload_bytes,
        last,
    }
}

pub struct Arrivals {
    pub at: HashMap<String, Instant>,
    /// Size of the message that carried each record.
    pub payload_bytes: HashMap<String, usize>,
    pub last: Option<Instant>,
}

impl Arrivals {
    /// Push → arrival of every record that arrived, sorted.
    pub fn latencies(&self, pushed: &[Pushed]) -> Vec<Duration> {
        let mut l: Vec<Duration> = pushed
            .iter()
            .filter_map(|p| {
                self.at
                    .get(&p.id)
                    .map(|t| t.saturating_duration_since(p.at))
            })
            .collect();
        l.sort();
        l
    }

    /// Pushed records that never arrived.
    pub fn lost(&self, pushed: &[Pushed]) -> usize {
        pushed
            .iter()
            .filter(|p| !self.at.contains_key(&p.id))
            .count()
    }

    /// When the last of them arrived (now if none did).
    pub fn last(&self) -> Instant {
        self.last.unwrap_or_else(Instant::now)
    }
}

/// The event id of a bridge record message.
pub fn bridge_id(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some(v["event_id"].as_str()?.to_string())
}

/// Figures as the table prints them.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `12345.6` → `12,346`.
pub fn count(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
