//! Scenarios 4 and 5: a large backlog (1 in 10 records with a photo) spooled while the broker
//! is down. The bridge is then stopped and started again on that spool (start → READY=1, with
//! the broker still down), and the broker returns: drain time, memory, nothing lost.

use std::path::Path;
use std::time::{Duration, Instant};

use face2mqtt::simulator::SimConfig;

use crate::bridge::{proc_of, spool_dir, Notify, Setup};
use crate::common::{simulator, subscribe, wait_link, Mosquitto};
use crate::measure::{self, collect, disk_usage, push_many};

pub struct Backlog {
    pub n: usize,
    /// First push → the bridge has spooled everything.
    pub spooling: Duration,
    /// The spool directory on disk once everything is in it.
    pub spool_bytes: u64,
    /// Start → READY=1 with the backlog on disk, the median of `ready_runs`.
    pub ready: Duration,
    pub ready_runs: usize,
    /// Broker start → last record arrived.
    pub drain: Duration,
    /// The higher VmHWM of the two processes (spooling, then restarted and draining).
    pub peak_rss: u64,
    pub peak_rss_spooling: u64,
    pub lost: usize,
}

/// The spool's cap is raised to 2 GiB so that the whole backlog, photos included, is kept
/// (with the default 512 MiB the photos of the oldest records would give way). `bin`: another
/// build's binary (`BENCH_BASELINE_BIN`), or `None` for this build's.
pub async fn run(n: usize, ready_runs: usize, bin: Option<&Path>) -> Backlog {
    let mut broker = Mosquitto::start();
    let s = simulator(SimConfig {
        max_records: n + 1000,
        ..SimConfig::default()
    })
    .await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let notify = Notify::bind();
    let env = [("NOTIFY_SOCKET", notify.path.as_str())];
    let mut bridge = Setup {
        spool_keys: "max_size = \"2GiB\"",
        env: &env,
        log_level: measure::TAKEN_LOG,
        bin,
        ..Setup::one(broker.port, &s.sim)
    }
    .start();
    notify.wait_for("READY=1");
    wait_link(&s.sim, 1).await;
    broker.stop();
    let started = Instant::now();
    let pushed = push_many(&s.sim, "front-door", n, |i| i % 10 == 0).await;
    let mut log = measure::TakenInLog::new(&bridge.log);
    let taken = measure::wait_taken(&s.sim, n, || log.count(), Duration::from_secs(900)).await;
    let spooling = taken.duration_since(started);
    let spool_bytes = disk_usage(&spool_dir(&bridge));
    let peak_rss_spooling = proc_of(&bridge).peak_rss();

    notify.stop(&mut bridge);
    let mut times = Vec::new();
    for i in 0..ready_runs {
        times.push(notify.time_start(&mut bridge));
        if i + 1 < ready_runs {
            notify.stop(&mut bridge);
        }
    }
    times.sort();
    wait_link(&s.sim, 1).await;

    broker.restart();
    let restarted = Instant::now();
    let arrivals = collect(&mut sub, n, Duration::from_secs(60), measure::bridge_id).await;
    let drain = arrivals.last().saturating_duration_since(restarted);
    let peak_drain = proc_of(&bridge).peak_rss();
    Backlog {
        n,
        spooling,
        spool_bytes,
        ready: times[times.len() / 2],
        ready_runs,
        drain,
        peak_rss: peak_rss_spooling.max(peak_drain),
        peak_rss_spooling,
        lost: arrivals.lost(&pushed),
    }
}
