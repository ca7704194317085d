//! Backfill of long gaps: the window is walked in slices small enough to hold in memory, oldest
//! first, and nothing is lost or doubled at the slices' edges.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Stores `n` records the bridge never saw, `per_second` of them in each second, ending now.
fn store_gap(sim: &Sim, n: u64, per_second: u64) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let first = now - n / per_second;
    let mut ids = Vec::new();
    for k in 0..n {
        let sign_time = first + k / per_second;
        let id = 10_000 + k;
        let fields =
            json!({"id": id, "signTime": sign_time, "type": 1, "name": format!("Visitor {k}")});
        if let Value::Object(m) = fields {
            sim.sim.store_raw(m, sign_time);
        }
        ids.push(format!("front-door-{sign_time}-{id}"));
    }
    ids
}

/// Runs a fresh bridge (its first backfill looks back an hour) until every id has arrived;
/// returns the records in the order the broker delivered them, and the bridge's log.
async fn backfill(sim: &Sim, ids: &[String]) -> (Vec<Value>, String) {
    let broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &sim.sim, PASSWORD));
    let mut seen = Vec::new();
    let want: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    collect_records(
        &mut sub,
        &mut seen,
        &want,
        Duration::from_secs(120),
        &bridge,
    )
    .await;
    (records_of(&seen), bridge.log_text())
}

fn counts(records: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in records {
        *out.entry(r["event_id"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_of_1500_records_arrives_whole_once_each_and_oldest_first() {
    let sim = default_simulator().await;
    let ids = store_gap(&sim, 1500, 1);
    let (records, log) = backfill(&sim, &ids).await;

    let counts = counts(&records);
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "published twice: {doubled:?}");
    assert!(ids.iter().all(|id| counts.contains_key(id)));
    // Slices are spooled oldest first, so the broker sees time going forward.
    let times: Vec<u64> = records
        .iter()
        .filter_map(|r| r["timestamp"].as_u64())
        .collect();
    let backwards = times.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(backwards, 0, "records out of order: {times:?}");
    // More than a slice holds: the window was halved rather than read whole into memory.
    assert!(
        log.contains("backfill: a slice too large to hold, halved"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_records_in_one_second_than_a_slice_holds_all_arrive_once() {
    let sim = default_simulator().await;
    // 1,200 records in two seconds: no slice that small can be halved, so they are streamed.
    let ids = store_gap(&sim, 1200, 600);
    let (records, _) = backfill(&sim, &ids).await;
    let counts = counts(&records);
    assert!(
        ids.iter().all(|id| counts.get(id) == Some(&1)),
        "{counts:?}"
    );
}
