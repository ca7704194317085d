//! Scenario 7: many simulated terminals (each on its own ports, all in one bridge config), each
//! recognizing someone with a photo at a steady rate: latency, memory and the bridge's CPU.

use std::time::{Duration, Instant};

use face2mqtt::simulator::SimConfig;

use crate::bridge::{proc_of, Setup};
use crate::common::{simulator, subscribe, wait_link, Mosquitto};
use crate::latency::{paced, Latency};
use crate::measure;

pub struct Scale {
    pub terminals: usize,
    pub per_second: f64,
    pub n: usize,
    pub wall: Duration,
    pub latency: Latency,
    pub peak_rss: u64,
    /// The bridge's CPU time (user + system) over the wall time, in % of one core.
    pub cpu_percent: f64,
}

pub async fn run(terminals: usize, per_second: f64, run_for: Duration) -> Scale {
    let broker = Mosquitto::start();
    let mut sims = Vec::new();
    for _ in 0..terminals {
        sims.push(simulator(SimConfig::default()).await);
    }
    let named: Vec<(String, face2mqtt::simulator::Simulator)> = sims
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("t{:02}", i + 1), s.sim.clone()))
        .collect();
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Setup {
        terminals: named.iter().map(|(id, sim)| (id.clone(), sim)).collect(),
        ..Setup::one(broker.port, &sims[0].sim)
    }
    .start();
    for s in &sims {
        wait_link(&s.sim, 1).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p = proc_of(&bridge);
    let gap = Duration::from_secs_f64(1.0 / (per_second * terminals as f64));
    let n = (run_for.as_secs_f64() * per_second * terminals as f64) as usize;
    let cpu_before = p.cpu();
    let start = Instant::now();
    let latency = paced(&named, &mut sub, n, gap, |_| true, measure::bridge_id).await;
    let wall = start.elapsed();
    let cpu = p.cpu() - cpu_before;
    Scale {
        terminals,
        per_second,
        n,
        wall,
        latency,
        peak_rss: p.peak_rss(),
        cpu_percent: cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
    }
}
