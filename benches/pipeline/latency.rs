//! Push → MQTT latency at a steady rate: one record every `gap`, each stamped when pushed and
//! when its event id reaches the subscriber.

use std::sync::Arc;
use std::time::{Duration, Instant};

use face2mqtt::integrations::terminal::PersonType;
use face2mqtt::simulator::{SimConfig, Simulator};

use crate::bridge::{proc_of, Rig};
use crate::common::Subscriber;
use crate::measure::{self, collect, event_id, percentile, photo_bytes, Pushed};

pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub lost: usize,
}

/// Pushes `n` records round-robin over `terminals`, one every `gap` (on a fixed schedule, so a
/// slow push does not slow the rate), while collecting arrivals at `sub`.
pub async fn paced(
    terminals: &[(String, Simulator)],
    sub: &mut Subscriber,
    n: usize,
    gap: Duration,
    photo: fn(usize) -> bool,
    id_of: fn(&[u8]) -> Option<String>,
) -> Latency {
    let terminals: Arc<Vec<(String, Simulator)>> = Arc::new(terminals.to_vec());
    let pusher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(gap);
        let mut pushed = Vec::with_capacity(n);
        for i in 0..n {
            tick.tick().await;
            let (id, sim) = &terminals[i % terminals.len()];
            sim.set_photos(photo(i));
            let r = sim.push(Some(PersonType::Staff));
            pushed.push(Pushed {
                id: event_id(id, &r),
                at: Instant::now(),
                photo: photo_bytes(&r),
            });
        }
        pushed
    });
    let arrivals = collect(sub, n, Duration::from_secs(15), id_of).await;
    let pushed = pusher.await.expect("pusher");
    let l = arrivals.latencies(&pushed);
    Latency {
        p50: percentile(&l, 50),
        p99: percentile(&l, 99),
        lost: arrivals.lost(&pushed),
    }
}

/// Scenario 1: records at 50/s, all with photos or all without, through a fresh bridge.
pub async fn run(photos: bool, n: usize) -> (Latency, u64) {
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
    let photo: fn(usize) -> bool = if photos { |_| true } else { |_| false };
    let terminals = [("front-door".to_string(), s.sim.clone())];
    let l = paced(
        &terminals,
        &mut sub,
        n,
        Duration::from_millis(20),
        photo,
        measure::bridge_id,
    )
    .await;
    (l, proc_of(&bridge).peak_rss())
}
