//! A terminal clock that jumps, end to end: the bridge process against a real Mosquitto and the
//! in-process simulator. Delivery is judged by a subscriber on the broker, never by the bridge.

mod common;

use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::PersonType;
use serde_json::Value;

/// 2040-01-01 minus now, in ms: a clock that jumped to 2040.
fn to_2040_ms() -> i64 {
    let now = i64::try_from(face2mqtt::integrations::terminal::sign::now_ms()).expect("now");
    2_208_988_800_000 - now
}

/// Waits until the bridge has set the terminal's clock on link-up.
async fn link_up_synced(sim: &face2mqtt::simulator::Simulator) {
    eventually("the link-up sync", Duration::from_secs(10), || async {
        !sim.sync_times().is_empty()
    })
    .await;
}

const SECTIONS: &str = "[commands]\nrequire_synchronized_clock = false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_made_during_an_outage_after_a_record_dated_2040_all_arrive() {
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let mut seen = Vec::new();
    let setup = BridgeSetup {
        extra_sections: SECTIONS,
        ..BridgeSetup::new(broker.port, &sim.sim, "123456")
    };
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    // The link-up sync sets the clock right: the jump must come after it, or the sync may land
    // between the jump and the recognition and the record is dated now (seen once in a full .ci/run).
    link_up_synced(&sim.sim).await;
    let first = event_id_of(&sim.sim.push(Some(PersonType::Staff)));
    // The clock jumps to 2040 for one recognition (a bad NTP answer), then is right again.
    sim.sim.set_clock_skew(to_2040_ms());
    let future = event_id_of(&sim.sim.push(Some(PersonType::Staff)));
    sim.sim.set_clock_skew(0);
    let want = [first, future.clone()].into_iter().collect();
    collect_records(&mut sub, &mut seen, &want, Duration::from_secs(20), &bridge).await;
    assert!(future.contains("-2208988800-"), "dated 2040: {future}");

    // A short outage: the terminal records ten people nobody hears about live.
    sim.sim.reboot(Duration::from_secs(2));
    wait_link(&sim.sim, 0).await;
    let missed: std::collections::BTreeSet<String> = (0..10)
        .map(|_| event_id_of(&sim.sim.push(Some(PersonType::Staff))))
        .collect();
    wait_link(&sim.sim, 1).await;
    collect_records(
        &mut sub,
        &mut seen,
        &missed,
        Duration::from_secs(30),
        &bridge,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_whose_clock_fell_back_to_2000_still_fires_home_assistant_events() {
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/+/event").await;
    let mut seen = Vec::new();
    let setup = BridgeSetup {
        // Its clock is not set right here: the event must not depend on it.
        extra_terminal_keys: "time_sync_interval = \"0s\"",
        ..BridgeSetup::new(broker.port, &sim.sim, "123456")
    };
    let _bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    let now = i64::try_from(face2mqtt::integrations::terminal::sign::now_ms()).expect("now");
    sim.sim.set_clock_skew(946_684_800_000 - now);
    let id = event_id_of(&sim.sim.push(Some(PersonType::Staff)));
    assert!(id.contains("-9466848"), "dated 2000: {id}");
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(20),
        "the Recognition event",
        |m| {
            m.iter().any(|(_, p, _)| {
                serde_json::from_slice::<Value>(p).is_ok_and(|v| v["event_id"] == id.as_str())
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_seen_off_is_set_at_once_and_shown_in_diagnostics() {
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/bridge/diagnostics").await;
    let mut seen = Vec::new();
    let setup = BridgeSetup {
        extra_sections: SECTIONS,
        extra_mqtt_keys: "diagnostics_interval = \"1s\"",
        ..BridgeSetup::new(broker.port, &sim.sim, "123456")
    };
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    // The sync on link-up has happened (or is queued); what follows is the one the record asks.
    link_up_synced(&sim.sim).await;
    let before = sim.sim.sync_times().len();
    sim.sim.set_clock_skew(-3 * 3600 * 1000);
    sim.sim.push(Some(PersonType::Staff));
    eventually(
        "the terminal's clock set again",
        Duration::from_secs(10),
        || async { sim.sim.sync_times().len() > before && sim.sim.clock_skew_ms().abs() < 60_000 },
    )
    .await;
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(20),
        "diagnostics with the offset",
        |m| {
            m.iter().any(|(_, p, _)| {
                serde_json::from_slice::<Value>(p).is_ok_and(|v| {
                    v["terminal_clock_offset_s"]["front-door"]
                        .as_i64()
                        .is_some_and(|o| (-3 * 3600 - 60..-3 * 3600 + 60).contains(&o))
                        && v["terminal_records_misdated"]["front-door"] == 1
                })
            })
        },
    )
    .await;
    let log = bridge.log_text();
    assert_eq!(
        log.matches("the terminal's clock is 3h").count(),
        1,
        "one line for the episode: {log}"
    );
    assert!(log.contains("3h behind this machine's"), "{log}");
}
