//! A failing SD card: EIO on write and on fsync, on the lazy card (`common::lazycard`). The
//! bridge never reports durable what is not: a failed fsync is never retried (after one, Linux
//! marks the pages it could not write clean, and the next fsync reports success for data that
//! is not on the card); the bridge stops taking records, says so once, and starts again from
//! the last good flush. The judge is a subscriber on the real broker, after a power cut.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::lazycard::LazyCard;
use common::*;
use face2mqtt::simulator::{SimConfig, Simulator};
use serde_json::Value;

/// Waits until every record made has reached the subscriber (`got` holds what did so far); the
/// ones that did not, if any.
async fn delivered(
    sub: &mut Subscriber,
    got: &mut BTreeSet<String>,
    made: &BTreeSet<String>,
    within: Duration,
) -> Vec<String> {
    let end = tokio::time::Instant::now() + within;
    while !got.is_superset(made) {
        match tokio::time::timeout_at(end, sub.rx.recv()).await {
            Ok(Some((_, payload, _))) => {
                if let Ok(v) = serde_json::from_slice::<Value>(&payload) {
                    if let Some(id) = v["event_id"].as_str() {
                        got.insert(id.to_string());
                    }
                }
            }
            _ => break,
        }
    }
    made.difference(got).cloned().collect()
}

async fn links(sim: &Simulator, n: usize) -> bool {
    let mut links = sim.ws_clients();
    let up = tokio::time::timeout(Duration::from_secs(20), links.wait_for(|k| *k == n)).await;
    matches!(up, Ok(Ok(_)))
}

/// The bridge with its spool on the lazy card, the simulator, a durable Mosquitto and a
/// subscriber; three records already through. `None` (said SKIPPED) where FUSE cannot be used.
struct Rig {
    card: LazyCard,
    s: Sim,
    broker: Mosquitto,
    sub: Subscriber,
    bridge: Bridge,
    made: BTreeSet<String>,
    got: BTreeSet<String>,
}

impl Rig {
    async fn start(name: &str) -> Option<Rig> {
        let card = match LazyCard::mount() {
            Ok(card) => card,
            Err(why) => {
                skipped(name, &format!("the lazy card cannot be mounted: {why}"));
                return None;
            }
        };
        let s = simulator(SimConfig {
            rate: 0.0,
            ..SimConfig::default()
        })
        .await;
        let broker = Mosquitto::start_durable();
        let sub = subscribe(broker.port, "face2mqtt/+/record").await;
        let setup = BridgeSetup::new(broker.port, &s.sim, PASSWORD);
        let bridge = Bridge::start_with_spool(&setup, &card.path().join("spool"));
        assert!(links(&s.sim, 1).await, "the bridge links up");
        let mut rig = Rig {
            card,
            s,
            broker,
            sub,
            bridge,
            made: BTreeSet::new(),
            got: BTreeSet::new(),
        };
        rig.push(3);
        assert!(rig.lost(Duration::from_secs(20)).await.is_empty());
        Some(rig)
    }

    fn push(&mut self, n: usize) {
        push_recorded(&self.s.sim, n, &mut self.made);
    }

    /// What was made and has not arrived within `within`.
    async fn lost(&mut self, within: Duration) -> Vec<String> {
        delivered(&mut self.sub, &mut self.got, &self.made, within).await
    }
}

/// The log segments' fsync fails while records wait for a broker that is down; the card works
/// again. With `cut_while_down`, the power goes while the bridge is stopped; without, the bridge
/// starts again at once (its pages still in the page cache, clean and unwritten) and the power
/// goes later, once it has taken its spool back.
async fn a_failed_fsync(name: &str, cut_while_down: bool) {
    let Some(Rig {
        card,
        s,
        mut broker,
        mut sub,
        mut bridge,
        mut made,
        mut got,
    }) = Rig::start(name).await
    else {
        return;
    };
    broker.stop();
    card.fail_fsync_of(Some(".log"), true);
    push_recorded(&s.sim, 10, &mut made);
    eventually("a flush fails", Duration::from_secs(20), || async {
        card.stats().failed_fsyncs > 0
    })
    .await;
    card.fail_fsync_of(None, false);
    // More records, in batches of their own: a build that retried its fsync would flush them
    // and move its synced mark past the frames the card never got.
    for _ in 0..3 {
        push_recorded(&s.sim, 2, &mut made);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stopped = {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = bridge.exited() {
                break Some(status);
            }
            if std::time::Instant::now() > end {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let first_run = bridge.log_text();
    bridge.kill9();
    if cut_while_down {
        card.cut();
    }
    // systemd starts it again; the broker is still down.
    assert!(links(&s.sim, 0).await);
    bridge.spawn();
    assert!(links(&s.sim, 1).await, "the bridge comes back");
    if !cut_while_down {
        // Some time for it to take its spool back and queue what it fetches, then the power.
        push_recorded(&s.sim, 2, &mut made);
        tokio::time::sleep(Duration::from_millis(500)).await;
        bridge.kill9();
        card.cut();
        assert!(links(&s.sim, 0).await);
        bridge.spawn();
        assert!(
            links(&s.sim, 1).await,
            "the bridge comes back after the cut"
        );
    }
    broker.restart();
    let lost = delivered(&mut sub, &mut got, &made, Duration::from_secs(60)).await;
    assert!(bridge.stop(), "the bridge stops cleanly");
    let log = bridge.log_text();
    assert!(
        lost.is_empty(),
        "{} of {} records never arrived, e.g. {:?}",
        lost.len(),
        made.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(quarantined(&bridge), 0, "nothing quarantined");
    assert!(
        !log.contains("moving it aside"),
        "the spool stayed readable"
    );
    assert!(
        stopped.is_some_and(|s| !s.success()),
        "the bridge stopped by itself after the failed fsync, with an error ({stopped:?})"
    );
    let said = first_run
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("did not take what was written"))
        .count();
    assert_eq!(said, 1, "said once:\n{first_run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_bridge_and_a_power_cut_then_loses_nothing() {
    a_failed_fsync("failing_card: fsync, cut while down", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_fsync_the_next_start_writes_again_what_the_card_may_not_have() {
    a_failed_fsync("failing_card: fsync, cut after the restart", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_that_fails_writes_holds_records_says_so_once_and_loses_nothing() {
    let Some(Rig {
        card,
        s,
        broker: _broker,
        mut sub,
        mut bridge,
        mut made,
        mut got,
    }) = Rig::start("failing_card: writes").await
    else {
        return;
    };
    card.fail_writes(true);
    push_recorded(&s.sim, 10, &mut made);
    let says = |l: &str| {
        l.contains("ERROR")
            && (l.contains("cannot spool") || l.contains("the spool takes no more records"))
    };
    eventually(
        "the bridge says the spool fails",
        Duration::from_secs(20),
        || async { bridge.log_text().lines().any(says) },
    )
    .await;
    card.fail_writes(false);
    // The records wait in memory (sled's errors are sticky: the bridge may give up and exit, to
    // be started again, as systemd does, and fetch them from the terminal).
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut restarts = 0;
    let lost = loop {
        let lost = delivered(&mut sub, &mut got, &made, Duration::from_millis(500)).await;
        if lost.is_empty() || tokio::time::Instant::now() > end {
            break lost;
        }
        if bridge.exited().is_some() {
            restarts += 1;
            bridge.spawn();
        }
    };
    let log = bridge.log_text();
    assert!(
        lost.is_empty(),
        "{} records never arrived after {restarts} restarts, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let said = log.lines().filter(|l| says(l)).count();
    assert!(
        said <= 1 + restarts,
        "said once per run, not per record or per retry ({said} times, {restarts} restarts):\n{log}"
    );
}
