//! Scenario 6: records with photos that the terminal keeps while the bridge's link is down (the
//! terminal refuses the bridge's signature meanwhile), fetched over the paged HTTP API once the
//! link is back.

use std::time::{Duration, Instant};

use face2mqtt::simulator::SimConfig;

use crate::bridge::{proc_of, Rig};
use crate::common::wait_link;
use crate::measure::{self, collect, push_many};

pub struct Backfill {
    pub n: usize,
    /// Link allowed again → last record arrived.
    pub time: Duration,
    pub peak_rss: u64,
    pub lost: usize,
}

pub async fn run(n: usize) -> Backfill {
    let Rig {
        sim: s,
        mut sub,
        bridge,
        broker: _broker,
    } = Rig::start(SimConfig {
        max_records: n + 1000,
        ..SimConfig::default()
    })
    .await;
    // The link goes down and stays down: every signed call is refused (20002 / 10005).
    s.sim.set_refuse_auth(true);
    s.sim.close_links();
    wait_link(&s.sim, 0).await;
    let pushed = push_many(&s.sim, "front-door", n, |_| true).await;
    s.sim.clear_faults();
    let back = Instant::now();
    let arrivals = collect(&mut sub, n, Duration::from_secs(60), measure::bridge_id).await;
    Backfill {
        n,
        time: arrivals.last().saturating_duration_since(back),
        peak_rss: proc_of(&bridge).peak_rss(),
        lost: arrivals.lost(&pushed),
    }
}
