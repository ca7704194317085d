//! Hostile and broken surroundings, end to end: the bridge process against a real Mosquitto and
//! the in-process simulator. Each test is a finding of issue 9 that used to stop delivery.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::PersonType;
use serde_json::{json, Value};

fn record_ids(messages: &[(String, Vec<u8>, bool)]) -> BTreeSet<i64> {
    records_of(messages)
        .iter()
        .filter_map(|r| r["record_id"].as_i64())
        .collect()
}

fn event_id(pushed: &Value) -> Option<String> {
    let map = pushed.as_object()?;
    face2mqtt::pipeline::record::normalize(
        "front-door",
        map,
        face2mqtt::pipeline::record::Source::Live,
    )
    .ok()
    .map(|r| r.record.event_id)
}

/// Publishes one message with a packet limit big enough for hostile sizes.
async fn publish_big(port: u16, topic: &str, payload: Vec<u8>, retain: bool) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new(format!("test-big-{}", fastrand::u64(..)), "127.0.0.1", port);
    o.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .expect("queued");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("test publisher: {e}"),
            }
        }
    })
    .await
    .expect("published in time");
    let _ = client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_the_packet_limit_goes_out_reduced_and_blocks_nothing() {
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &sim.sim, "123456"));
    eventually("the link is up", Duration::from_secs(20), || async {
        *sim.sim.ws_clients().borrow() > 0
    })
    .await;

    // 600 KB of free text: under the 1 MiB frame limit, over the 512 KiB packet limit.
    let big = sim.sim.push_edited(PersonType::Staff, |f| {
        f.insert("description".into(), json!("x".repeat(600_000)));
    });
    let big_id = big["id"].as_i64().expect("id");
    let after: Vec<i64> = (0..3)
        .map(|_| {
            sim.sim.push(Some(PersonType::Visitor))["id"]
                .as_i64()
                .expect("id")
        })
        .collect();

    let mut seen = Vec::new();
    let want: BTreeSet<i64> = after.iter().copied().chain([big_id]).collect();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(30),
        "the big record and those behind it",
        |m| record_ids(m).is_superset(&want),
    )
    .await;
    let big: Value = records_of(&seen)
        .into_iter()
        .find(|r| r["record_id"] == big_id)
        .expect("the big record");
    assert_eq!(big["truncated"], true, "{}", &big.to_string()[..200]);
    assert!(big["extra"].get("description").is_none());
    let log = bridge.log_text();
    assert!(
        !log.contains("broker connection lost"),
        "the oversized record must not break the connection:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retained_request_neither_breaks_the_connection_nor_opens_the_door() {
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    // 1 MB retained on a request topic, left by a careless client before the bridge starts.
    publish_big(
        broker.port,
        "face2mqtt/front-door/request/open",
        vec![b'x'; 1_000_000],
        true,
    )
    .await;
    let mut responses = subscribe(broker.port, "face2mqtt/front-door/response/open").await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &sim.sim, "123456"));
    let mut answers = Vec::new();
    collect_until(
        &mut responses,
        &mut answers,
        Duration::from_secs(20),
        "the refusal",
        |m| !m.is_empty(),
    )
    .await;
    let answer: Value = serde_json::from_slice(&answers[0].1).expect("json");
    assert_eq!(answer["status"], "error", "{answer}");

    eventually("the link is up", Duration::from_secs(20), || async {
        *sim.sim.ws_clients().borrow() > 0
    })
    .await;
    let want: BTreeSet<i64> = (0..5)
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
        Duration::from_secs(30),
        "5 records",
        |m| record_ids(m).is_superset(&want),
    )
    .await;
    assert_eq!(
        records_of(&seen).len(),
        5,
        "each record once: no reconnect loop resending the spool"
    );
    assert!(sim.sim.opens().is_empty(), "a retained request never opens");
    let log = bridge.log_text();
    assert!(!log.contains("broker connection lost"), "{log}");
}

/// A retained request larger than anything the bridge reads sits on a subscribed topic; the
/// bridge starts with `mqtt_keys` and 5 records must still reach the broker.
async fn records_flow_past_a_huge_retained_request(
    sim: &Sim,
    broker: &Mosquitto,
    mqtt_keys: &str,
) -> Bridge {
    publish_big(
        broker.port,
        "face2mqtt/front-door/request/reboot",
        vec![b'x'; 6 << 20],
        true,
    )
    .await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Bridge::start(&BridgeSetup {
        extra_mqtt_keys: mqtt_keys,
        ..BridgeSetup::new(broker.port, &sim.sim, "123456")
    });
    wait_link(&sim.sim, 1).await;
    let want: BTreeSet<i64> = (0..5)
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
        Duration::from_secs(30),
        "5 records",
        |m| record_ids(m).is_superset(&want),
    )
    .await;
    bridge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_mqtt_5_a_message_too_large_to_read_is_never_sent_and_the_connection_holds() {
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    // MQTT 5's CONNECT says the largest packet we read: the broker drops what is larger.
    let bridge = records_flow_past_a_huge_retained_request(&sim, &broker, "").await;
    let log = bridge.log_text();
    assert!(!log.contains("broker connection lost"), "{log}");
    assert_eq!(sim.sim.reboots(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_to_read_on_a_subscribed_topic_does_not_stop_the_records() {
    let sim = default_simulator().await;
    let broker = Mosquitto::start();
    // Under 3.1.1 the broker sends it anyway and the connection breaks on every subscribe.
    let bridge =
        records_flow_past_a_huge_retained_request(&sim, &broker, "protocol = \"3.1.1\"").await;
    eventually("the bridge says why", Duration::from_secs(10), || async {
        bridge.log_text().contains("mosquitto_pub -r -n -t")
    })
    .await;
    let lost = bridge.log_text().matches("broker connection lost").count();
    assert!(
        lost <= 3,
        "the connection must settle, not loop ({lost} losses)"
    );
    assert_eq!(sim.sim.reboots(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_record_the_terminal_still_holds() {
    let Some(disk) = SmallDisk::mount(12 << 20) else {
        skipped(
            "a_full_disk_loses_no_record_the_terminal_still_holds",
            "cannot mount a tmpfs here (needs root)",
        );
        return;
    };
    let sim = default_simulator().await;
    let mut broker = Mosquitto::start();
    // Subscribed first, with a session the broker keeps across its restart.
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    broker.stop();
    let setup = BridgeSetup::new(broker.port, &sim.sim, "123456");
    // spool.max_size (the default, 512 MiB) is far above the 12 MiB the disk has.
    let mut bridge = Bridge::start_with_spool(&setup, &disk.dir.path().join("spool"));
    eventually("the link is up", Duration::from_secs(20), || async {
        *sim.sim.ws_clients().borrow() > 0
    })
    .await;
    // ~45 KB photos: 400 of them are half again the disk.
    let want: BTreeSet<String> = (0..400)
        .filter_map(|_| event_id(&sim.sim.push(Some(PersonType::Staff))))
        .collect();
    eventually("the spool is full", Duration::from_secs(30), || async {
        let log = bridge.log_text();
        log.contains("dropped photos") || log.contains("holding new records")
    })
    .await;
    broker.restart();
    // As systemd's Restart=always would, should the bridge give up on its spool. A record
    // counts once the test subscriber (a persistent session, across the clean restart) saw it.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(120);
    while !seen.is_superset(&want) {
        if tokio::time::Instant::now() >= end {
            let missing: Vec<&String> = want.difference(&seen).collect();
            panic!(
                "records lost: {} of {} reached the broker; missing {missing:?}",
                want.len() - missing.len(),
                want.len()
            );
        }
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.rx.recv()).await {
            let v: Value = serde_json::from_slice(&m.1).unwrap_or_default();
            if let Some(id) = v["event_id"].as_str() {
                seen.insert(id.to_string());
            }
        }
        if bridge.exited().is_some() {
            bridge.spawn();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_damaged_spool_lost_come_back_from_the_terminal() {
    let sim = default_simulator().await;
    let mut broker = Mosquitto::start();
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    broker.stop();
    // Without the low-water mark a fresh spool would look back only this far: not enough.
    let setup = BridgeSetup {
        extra_terminal_keys: "backfill_first = \"1s\"",
        ..BridgeSetup::new(broker.port, &sim.sim, "123456")
    };
    let mut bridge = Bridge::start(&setup);
    eventually("the link is up", Duration::from_secs(20), || async {
        *sim.sim.ws_clients().borrow() > 0
    })
    .await;
    let want: BTreeSet<i64> = (0..20)
        .map(|_| {
            sim.sim.push(Some(PersonType::Visitor))["id"]
                .as_i64()
                .expect("id")
        })
        .collect();
    eventually("20 records spooled", Duration::from_secs(20), || async {
        bridge.log_text().matches("record received").count() >= 20
    })
    .await;
    assert!(bridge.stop(), "a clean stop");
    // What a bad SD card can do to sled's file: it opens, and holds nothing.
    let db = bridge.dir.path().join("spool").join("db");
    std::fs::write(&db, b"").expect("truncate the spool");
    broker.restart();
    bridge.spawn();
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(60),
        "every spooled record",
        |m| record_ids(m).is_superset(&want),
    )
    .await;
    eventually(
        "the bridge says it recovered them",
        Duration::from_secs(10),
        || async { bridge.log_text().contains("backfill fetched records") },
    )
    .await;
}
