//! Scenario 2: records pushed as fast as the simulator prints them, the broker up; the rate
//! from the first push to the last arrival, and what the bridge wrote to disk for each record
//! against the record's spooled size.

use std::time::Duration;

use face2mqtt::simulator::SimConfig;

use crate::bridge::{proc_of, Rig};
use crate::measure::{self, collect, push_many, Proc};

pub struct Sustained {
    pub n: usize,
    pub rate: f64,
    pub peak_rss: u64,
    /// Bytes written to the block device per record.
    pub written: f64,
    /// What the spool holds per record: its JSON as published plus its photo.
    pub spooled: f64,
    pub lost: usize,
    /// CPU time (user + system) per record over the run: the bridge, the bench process (the
    /// simulator printing frames and the subscriber reading them) and Mosquitto. Their sum over
    /// the wall time says whether the machine's cores, not the bridge, set the rate.
    pub cpu: Cpu,
}

#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub bridge: Duration,
    pub bench: Duration,
    pub broker: Duration,
    pub wall: Duration,
}

impl Cpu {
    /// Cores busy on average over the run, the three processes together.
    pub fn cores(&self) -> f64 {
        (self.bridge + self.bench + self.broker).as_secs_f64() / self.wall.as_secs_f64()
    }
}

pub async fn run(photos: bool, n: usize) -> Sustained {
    let Rig {
        sim: s,
        mut sub,
        bridge,
        broker: mosquitto,
    } = Rig::start(SimConfig {
        photos,
        ..SimConfig::default()
    })
    .await;
    let p = proc_of(&bridge);
    let me = Proc(std::process::id());
    let broker = Proc(mosquitto.pid().expect("broker running"));
    let cpu_before = [p.cpu(), me.cpu(), broker.cpu()];
    let written_before = p.write_bytes();
    let pusher = {
        let sim = s.sim.clone();
        tokio::spawn(async move { push_many(&sim, "front-door", n, move |_| photos).await })
    };
    let arrivals = collect(&mut sub, n, Duration::from_secs(30), measure::bridge_id).await;
    let pushed = pusher.await.expect("pusher");
    let wall = arrivals.last().duration_since(pushed[0].at);
    let cpu_after = [p.cpu(), me.cpu(), broker.cpu()];
    let per = |i: usize| cpu_after[i].saturating_sub(cpu_before[i]);
    let cpu = Cpu {
        bridge: per(0),
        bench: per(1),
        broker: per(2),
        wall,
    };
    let rate = n as f64 / wall.as_secs_f64();
    // The last group commit after the last PUBACK belongs to these records too.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let written = (p.write_bytes() - written_before) as f64 / n as f64;
    let spooled = pushed
        .iter()
        .map(|r| r.photo + arrivals.payload_bytes.get(&r.id).copied().unwrap_or(0))
        .sum::<usize>() as f64
        / n as f64;
    Sustained {
        n,
        rate,
        peak_rss: p.peak_rss(),
        written,
        spooled,
        lost: arrivals.lost(&pushed),
        cpu,
    }
}
