//! Network faults for real: the bridge, the simulator and Mosquitto run inside a network
//! namespace of their own (its own loopback), where firewall rules and queueing disciplines can
//! break the link without touching the machine's network. Needs root and `ip netns`; each test
//! prints a SKIPPED line where that is not permitted.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::PersonType;

const INSIDE: &str = "FACE2MQTT_IN_NETNS";

/// Runs the named test again inside a fresh namespace; `false` when it could not be made.
fn rerun_in_namespace(test: &str) -> bool {
    let ns = format!("f2m-test-{}", fastrand::u32(..));
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    if !ok(Command::new("ip").args(["netns", "add", &ns])) {
        return false;
    }
    let up = ok(Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]));
    let exe = std::env::current_exe().expect("test binary");
    let status = up.then(|| {
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env(INSIDE, "1")
            .status()
    });
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let status = status.expect("lo up in the namespace").expect("test runs");
    assert!(status.success(), "{test} failed inside its namespace");
    true
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

fn record_ids(messages: &[(String, Vec<u8>, bool)]) -> BTreeSet<i64> {
    records_of(messages)
        .iter()
        .filter_map(|r| r["record_id"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_link_is_detected_within_dead_after_and_backfilled() {
    const NAME: &str = "a_half_open_link_is_detected_within_dead_after_and_backfilled";
    if std::env::var_os(INSIDE).is_none() {
        if !rerun_in_namespace(NAME) {
            skipped(
                NAME,
                "cannot create a network namespace here (needs root and ip netns)",
            );
        }
        return;
    }
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &sim.sim, PASSWORD));
    eventually("the link is up", Duration::from_secs(20), || async {
        *sim.sim.ws_clients().borrow() > 0
    })
    .await;
    let before = sim.sim.push(Some(PersonType::Staff))["id"]
        .as_i64()
        .expect("id");

    // Every packet to the simulator's WebSocket port vanishes: TCP stays "open", nothing flows.
    let port = sim.sim.ws_addr().port().to_string();
    let to = [
        "add", "rule", "inet", "f2m", "input", "tcp", "dport", &port, "drop",
    ];
    let from = [
        "add", "rule", "inet", "f2m", "input", "tcp", "sport", &port, "drop",
    ];
    if !(run("nft", &["add", "table", "inet", "f2m"])
        && run(
            "nft",
            &[
                "add",
                "chain",
                "inet",
                "f2m",
                "input",
                "{ type filter hook input priority 0; }",
            ],
        )
        && run("nft", &to)
        && run("nft", &from))
    {
        skipped(NAME, "nft is not usable here (apt-get install nftables)");
        return;
    }
    let dropped_at = std::time::Instant::now();
    eventually(
        "the bridge notices the dead link",
        Duration::from_secs(10),
        || async { bridge.log_text().contains("nothing received for") },
    )
    .await;
    let noticed = dropped_at.elapsed();
    // Recognized while the link is dead: only backfill can bring these.
    let during: Vec<i64> = (0..5)
        .map(|_| {
            sim.sim.push(Some(PersonType::Visitor))["id"]
                .as_i64()
                .expect("id")
        })
        .collect();
    assert!(run("nft", &["delete", "table", "inet", "f2m"]));
    let want: BTreeSet<i64> = during.iter().copied().chain([before]).collect();
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(30),
        "every record, backfilled",
        |m| record_ids(m).is_superset(&want),
    )
    .await;
    // dead_after is 1 s in the test config; the check runs on a loaded machine.
    assert!(
        noticed < Duration::from_secs(5),
        "a dead link must be noticed about dead_after after it died, not {noticed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossy_loopback_still_delivers_everything() {
    const NAME: &str = "a_slow_lossy_loopback_still_delivers_everything";
    if std::env::var_os(INSIDE).is_none() {
        if !rerun_in_namespace(NAME) {
            skipped(
                NAME,
                "cannot create a network namespace here (needs root and ip netns)",
            );
        }
        return;
    }
    if !run(
        "tc",
        &[
            "qdisc", "add", "dev", "lo", "root", "netem", "delay", "300ms", "loss", "5%",
        ],
    ) {
        skipped(
            NAME,
            "this kernel has no netem queueing discipline (sch_netem)",
        );
        return;
    }
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let _bridge = Bridge::start(&BridgeSetup::new(broker.port, &sim.sim, PASSWORD));
    eventually("the link is up", Duration::from_secs(60), || async {
        *sim.sim.ws_clients().borrow() > 0
    })
    .await;
    let want: BTreeSet<i64> = (0..20)
        .map(|_| {
            sim.sim.push(Some(PersonType::Staff))["id"]
                .as_i64()
                .expect("id")
        })
        .collect();
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(120),
        "20 records through netem",
        |m| record_ids(m).is_superset(&want),
    )
    .await;
}
