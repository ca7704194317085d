//! Scenario 3: a burst of photo records pushed while the broker is down, then the broker back
//! and everything drained; memory at its peak and a while after, against idle before the burst.
//! Run for the bridge here, and for Node-RED by `nodered.rs` with the same function.

use std::time::{Duration, Instant};

use face2mqtt::simulator::{SimConfig, Simulator};

use crate::bridge::{proc_of, Setup};
use crate::common::{simulator, subscribe, wait_link, Mosquitto, Subscriber};
use crate::measure::{self, collect, push_many, Proc};

pub struct Burst {
    pub n: usize,
    /// VmRSS idle before the burst (for the bridge: after the warm-up).
    pub idle_rss: u64,
    /// The bridge's VmRSS once linked, before its warm-up: what a fresh start takes.
    pub fresh_rss: Option<u64>,
    pub peak_rss: u64,
    /// VmRSS `settle` after the drain ended.
    pub rss_after: u64,
    pub settle: Duration,
    pub lost: usize,
    /// Broker start → last record arrived.
    pub drain: Duration,
}

/// Where the records are expected: a subscriber, how to read an event id from its messages,
/// and how long a silence ends the wait for records that may never come.
pub struct Listen<'a> {
    pub sub: &'a mut Subscriber,
    pub id_of: fn(&[u8]) -> Option<String>,
    pub idle: Duration,
}

/// The burst against whatever runs as `p`, taking records from `sim` (`taken` counts what it
/// has) and publishing to the broker that `to` listens on.
pub async fn burst(
    broker: &mut Mosquitto,
    sim: &Simulator,
    to: Listen<'_>,
    (p, taken): (Proc, impl FnMut() -> usize),
    n: usize,
    settle: Duration,
) -> Burst {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = p.rss();
    broker.stop();
    let pushed = push_many(sim, "front-door", n, |_| true).await;
    measure::wait_taken(sim, n, taken, Duration::from_secs(300)).await;
    broker.restart();
    let restarted = Instant::now();
    let arrivals = collect(to.sub, n, to.idle, to.id_of).await;
    let drain = arrivals.last().saturating_duration_since(restarted);
    let peak_rss = p.peak_rss();
    // From the end of the drain (the last arrival), not from when we noticed it.
    let waited = arrivals.last().elapsed();
    tokio::time::sleep(settle.saturating_sub(waited)).await;
    Burst {
        n,
        idle_rss,
        fresh_rss: None,
        peak_rss,
        rss_after: p.rss(),
        settle,
        lost: arrivals.lost(&pushed),
        drain,
    }
}

/// Photo records the bridge publishes before the burst. A bridge in service has published
/// records before; what the first ones allocate once (buffers grown to a photo's size) is not
/// what a burst leaves behind, so "idle" is measured after these, and the fresh start beside it.
pub const WARM_UP: usize = 20;

pub async fn run(n: usize, settle: Duration) -> Burst {
    let mut broker = Mosquitto::start();
    let s = simulator(SimConfig::default()).await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Setup {
        log_level: measure::TAKEN_LOG,
        ..Setup::one(broker.port, &s.sim)
    }
    .start();
    wait_link(&s.sim, 1).await;
    let p = proc_of(&bridge);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh_rss = p.rss();
    let warm = push_many(&s.sim, "front-door", WARM_UP, |_| true).await;
    let warmed = collect(
        &mut sub,
        WARM_UP,
        Duration::from_secs(60),
        measure::bridge_id,
    )
    .await;
    if warmed.lost(&warm) > 0 {
        eprintln!(
            "warning: {} of the {WARM_UP} warm-up records did not arrive",
            warmed.lost(&warm)
        );
    }
    // The log also names the warm-up records: only those after them count for the burst.
    let mut log = measure::TakenInLog::new(&bridge.log);
    let mut b = burst(
        &mut broker,
        &s.sim,
        Listen {
            sub: &mut sub,
            id_of: measure::bridge_id,
            idle: Duration::from_secs(60),
        },
        (p, || log.count().saturating_sub(WARM_UP)),
        n,
        settle,
    )
    .await;
    b.fresh_rss = Some(fresh_rss);
    b
}
