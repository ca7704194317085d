//! Pipeline benchmark: `cargo bench --bench pipeline` (needs Mosquitto; `scripts/test` installs it).
//!
//! Everything runs on this one machine: the simulator (in this process), the bridge (the release
//! binary, a separate process), Mosquitto and a subscriber. Figures are end to end and include the
//! simulator's own cost of printing frames; compare the rows of one run with each other (ratios),
//! not with another machine's. Set BENCH_SCALE=0.2 for a quick run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use face2mqtt::simulator::SimConfig;
use face2mqtt::terminal::PersonType;

fn scale(n: usize) -> usize {
    let f: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * f) as usize).max(10)
}

fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

struct Usage {
    peak_rss_kib: u64,
    write_bytes: u64,
}

fn usage(bridge: &Bridge) -> Usage {
    let pid = bridge.pid().unwrap_or(0);
    Usage {
        peak_rss_kib: proc_field(pid, "status", "VmHWM:").unwrap_or(0),
        write_bytes: proc_field(pid, "io", "write_bytes:").unwrap_or(0),
    }
}

fn event_id(r: &serde_json::Value) -> String {
    format!("front-door-{}-{}", r["signTime"], r["id"])
}

async fn wait_link(s: &Sim) {
    let mut c = s.sim.ws_clients();
    tokio::time::timeout(Duration::from_secs(30), c.wait_for(|n| *n == 1))
        .await
        .expect("link")
        .expect("watch");
}

/// Push one record every `gap` and time each from push to arrival at the subscriber.
async fn latency(photos: bool, n: usize, gap: Duration) -> (Duration, Duration) {
    let broker = Mosquitto::start();
    let s = simulator(SimConfig {
        photos,
        ..SimConfig::default()
    })
    .await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let _bridge = Bridge::start(&BridgeSetup {
        log_level: "warn",
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    });
    wait_link(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let the start-up backfill finish
    let sim = s.sim.clone();
    let pusher = tokio::spawn(async move {
        let mut sent = HashMap::new();
        for _ in 0..n {
            let r = sim.push(Some(PersonType::Staff));
            sent.insert(event_id(&r), Instant::now());
            tokio::time::sleep(gap).await;
        }
        sent
    });
    let mut arrived = HashMap::new();
    while arrived.len() < n {
        let (_, payload, _) = tokio::time::timeout(Duration::from_secs(60), sub.rx.recv())
            .await
            .expect("records arrive")
            .expect("open");
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        arrived
            .entry(v["event_id"].as_str().unwrap_or("").to_string())
            .or_insert_with(Instant::now);
    }
    let sent = pusher.await.expect("pusher");
    let mut lat: Vec<Duration> = arrived
        .iter()
        .filter_map(|(id, t)| sent.get(id).map(|s| t.saturating_duration_since(*s)))
        .collect();
    lat.sort();
    (
        lat[lat.len() / 2],
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
    )
}

/// Push `n` records as fast as the simulator prints them; time until the last arrives.
async fn throughput(photos: bool, n: usize) -> (f64, Usage) {
    let broker = Mosquitto::start();
    let s = simulator(SimConfig {
        photos,
        ..SimConfig::default()
    })
    .await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Bridge::start(&BridgeSetup {
        log_level: "warn",
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    });
    wait_link(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    for i in 0..n {
        s.sim.push(Some(PersonType::Staff));
        if i % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut ids = std::collections::HashSet::new();
    while ids.len() < n {
        let (_, payload, _) = tokio::time::timeout(Duration::from_secs(120), sub.rx.recv())
            .await
            .expect("records arrive")
            .expect("open");
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        ids.insert(v["event_id"].as_str().unwrap_or("").to_string());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (rate, usage(&bridge))
}

/// Spool `n` records with the broker down, then time the drain once it is back.
async fn drain(photos: bool, n: usize) -> (Duration, Usage) {
    let mut broker = Mosquitto::start();
    let s = simulator(SimConfig {
        photos,
        ..SimConfig::default()
    })
    .await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    broker.stop();
    let bridge = Bridge::start(&BridgeSetup {
        log_level: "face2mqtt=debug,warn",
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    });
    wait_link(&s).await;
    for i in 0..n {
        s.sim.push(Some(PersonType::Staff));
        if i % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let spooled = Instant::now();
    while bridge.log_text().matches("record received").count() < n {
        assert!(
            spooled.elapsed() < Duration::from_secs(300),
            "spooling took too long"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // the last group commit
    broker.restart();
    let start = Instant::now();
    let mut ids = std::collections::HashSet::new();
    while ids.len() < n {
        let (_, payload, _) = tokio::time::timeout(Duration::from_secs(300), sub.rx.recv())
            .await
            .expect("records arrive")
            .expect("open");
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        ids.insert(v["event_id"].as_str().unwrap_or("").to_string());
    }
    (start.elapsed(), usage(&bridge))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
                    / 1024
                    / 1024
            })
        })
        .unwrap_or(0);
    format!(
        "{cpu}, {cores} cores, {mem} GiB, {}",
        std::env::consts::ARCH
    )
}

/// Process start to systemd's READY=1 (spool open, every task running), over a notify socket
/// of our own; the median of `runs`.
async fn start_to_ready(runs: usize) -> Duration {
    use std::os::unix::net::UnixDatagram;
    let broker = Mosquitto::start();
    let s = simulator(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let notify = path.to_string_lossy().into_owned();
    let env = [("NOTIFY_SOCKET", notify.as_str())];
    let mut times = Vec::new();
    for _ in 0..runs {
        let setup = BridgeSetup {
            env: &env,
            log_level: "warn",
            ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
        };
        let started = Instant::now();
        let mut bridge = Bridge::start(&setup);
        let mut buf = [0u8; 1024];
        loop {
            let n = sock.recv(&mut buf).expect("READY=1 within 30 s");
            if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                break;
            }
        }
        times.push(started.elapsed());
        bridge.stop();
        while sock
            .recv(&mut buf)
            .is_ok_and(|n| !String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"))
        {}
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("machine: {}", machine());
        let ready = start_to_ready(5).await;
        println!("start to READY=1 (empty spool, median of 5): {:.0} ms", ready.as_secs_f64() * 1e3);
        let n_lat = scale(300);
        for photos in [true, false] {
            let (p50, p99) = latency(photos, n_lat, Duration::from_millis(20)).await;
            println!("latency push→MQTT, {} photos, {n_lat} records at 50/s: p50 {:.1} ms, p99 {:.1} ms",
                if photos { "with" } else { "without" }, p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
        }
        let n_tp = scale(2000);
        let mut rates = Vec::new();
        for photos in [true, false] {
            let (rate, u) = throughput(photos, n_tp).await;
            rates.push(rate);
            println!("sustained, {} photos, {n_tp} records: {:.0} records/s; bridge peak RSS {} MiB, disk writes {:.1} KiB/record",
                if photos { "with" } else { "without" }, rate, u.peak_rss_kib / 1024, u.write_bytes as f64 / n_tp as f64 / 1024.0);
        }
        println!("ratio without/with photos: {:.1}x", rates[1] / rates[0]);
        let n_drain = scale(10_000);
        for photos in [false, true] {
            let (d, u) = drain(photos, n_drain).await;
            println!("backlog drain, {} photos: {n_drain} spooled records in {:.1} s ({:.0} records/s); bridge peak RSS {} MiB, disk writes {:.1} KiB/record",
                if photos { "with" } else { "without" }, d.as_secs_f64(), n_drain as f64 / d.as_secs_f64(), u.peak_rss_kib / 1024, u.write_bytes as f64 / n_drain as f64 / 1024.0);
        }
    });
}
