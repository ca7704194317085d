//! Scenario 6: records without photos spooled while the broker is down, then the broker back
//! while the same bridge keeps running (no restart, unlike the backlog): broker start → the last
//! record at a subscriber, the bridge's peak memory, and nothing lost. The subscriber is the
//! judge of delivery, never the bridge's log (the log only tells when everything is spooled).
//!
//! Run for this build and, beside it, for an older one (`BENCH_BASELINE_BIN`, see `main.rs`):
//! the config is one that both read.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use face2mqtt::simulator::SimConfig;

use crate::bridge::{proc_of, Setup};
use crate::common::{simulator, subscribe, wait_link, Mosquitto};
use crate::measure::{self, collect, push_many, Proc};

pub struct Drain {
    pub n: usize,
    /// First push → the bridge has taken everything (its log), then quiet.
    pub spooling: Duration,
    /// Broker start → the last record arrived at the subscriber.
    pub drain: Duration,
    /// VmHWM over the bridge's whole run (spooling and draining), and before the broker returned.
    pub peak_rss: u64,
    pub peak_rss_spooling: u64,
    /// The bridge's user + system time from the broker's start to the last arrival.
    pub cpu: Duration,
    /// Bytes the bridge sent to the block layer over the drain (`/proc/<pid>/io`).
    pub written: u64,
    pub lost: usize,
}

/// Waits until `p` has used less than 20 ms of CPU in a second (the spool writer done with the
/// last batch), at most `deadline`.
async fn quiet(p: Proc, deadline: Duration) {
    let start = Instant::now();
    let mut last = p.cpu();
    while start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = p.cpu();
        if now.saturating_sub(last) < Duration::from_millis(20) {
            return;
        }
        last = now;
    }
    eprintln!("warning: the bridge was still busy {deadline:?} after taking every record");
}

/// `BENCH_DRAIN_PROFILE`: a command run beside the bridge for the drain only, `{pid}` replaced
/// by its pid and `{build}` by `current` or `baseline` (e.g. `strace -c -f -o
/// /tmp/drain-{build}.txt -p {pid}`); it gets SIGINT after the last record. The drain's figures
/// are then the profiled ones: compare them only with each other.
fn attach_profiler(pid: u32, build: &str) -> Option<Child> {
    let template = std::env::var("BENCH_DRAIN_PROFILE").ok()?;
    let line = template
        .replace("{pid}", &pid.to_string())
        .replace("{build}", build);
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {line}"))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("warning: BENCH_DRAIN_PROFILE did not start: {e}"))
        .ok()?;
    Some(child)
}

fn detach_profiler(child: Option<Child>) {
    if let Some(mut c) = child {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(c.id().to_string())
            .status();
        let _ = c.wait();
    }
}

/// `bin`: another build's binary, or `None` for this build's; `build` names it in the profile.
pub async fn run(n: usize, bin: Option<&Path>, build: &str) -> Drain {
    let mut broker = Mosquitto::start();
    let s = simulator(SimConfig {
        max_records: n + 1000,
        ..SimConfig::default()
    })
    .await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Setup {
        log_level: measure::TAKEN_LOG,
        bin,
        ..Setup::one(broker.port, &s.sim)
    }
    .start();
    wait_link(&s.sim, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the start-up backfill
    let p = proc_of(&bridge);
    broker.stop();
    let started = Instant::now();
    let pushed = push_many(&s.sim, "front-door", n, |_| false).await;
    let mut log = measure::TakenInLog::new(&bridge.log);
    measure::wait_taken(&s.sim, n, || log.count(), Duration::from_secs(300)).await;
    quiet(p, Duration::from_secs(60)).await;
    let spooling = started.elapsed();
    let peak_rss_spooling = p.peak_rss();
    let profiler = attach_profiler(p.0, build);
    if profiler.is_some() {
        tokio::time::sleep(Duration::from_secs(2)).await; // time to attach
    }
    let (cpu_before, written_before) = (p.cpu(), p.write_bytes());

    broker.restart();
    let restarted = Instant::now();
    let arrivals = collect(&mut sub, n, Duration::from_secs(60), measure::bridge_id).await;
    let drain = arrivals.last().saturating_duration_since(restarted);
    let (cpu, written) = (
        p.cpu().saturating_sub(cpu_before),
        p.write_bytes().saturating_sub(written_before),
    );
    detach_profiler(profiler);
    let peak_rss = p.peak_rss();
    let lost = arrivals.lost(&pushed);
    if lost > 0 {
        eprintln!("warning: drain ({build}): {lost} of {n} records never reached the subscriber");
    }
    Drain {
        n,
        spooling,
        drain,
        peak_rss,
        peak_rss_spooling,
        cpu,
        written,
        lost,
    }
}
