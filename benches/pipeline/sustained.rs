//! Scenario 2: records pushed as fast as the simulator prints them, the broker up; the rate
//! from the first push to the last arrival, and what the bridge wrote to disk for each record
//! against the record's spooled size.

use std::time::Duration;

use face2mqtt::simulator::SimConfig;

use crate::bridge::{proc_of, Rig};
use crate::measure::{self, collect, push_many};

pub struct Sustained {
    pub n: usize,
    pub rate: f64,
    pub peak_rss: u64,
    /// Bytes written to the block device per record.
    pub written: f64,
    /// What the spool holds per record: its JSON as published plus its photo.
    pub spooled: f64,
    pub lost: usize,
}

pub async fn run(photos: bool, n: usize) -> Sustained {
    let Rig {
        sim: s,
        mut sub,
        bridge,
        broker: _broker,
    } = Rig::start(SimConfig {
        photos,
        ..SimConfig::default()
    })
    .await;
    let p = proc_of(&bridge);
    let written_before = p.write_bytes();
    let pusher = {
        let sim = s.sim.clone();
        tokio::spawn(async move { push_many(&sim, "front-door", n, move |_| photos).await })
    };
    let arrivals = collect(&mut sub, n, Duration::from_secs(30), measure::bridge_id).await;
    let pushed = pusher.await.expect("pusher");
    let rate = n as f64 / arrivals.last().duration_since(pushed[0].at).as_secs_f64();
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
    }
}
