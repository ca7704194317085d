//! The durable pipeline end to end: simulator → bridge process → real Mosquitto → subscriber.
//! Every wait is on the event itself, with a deadline.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::PersonType;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Record ids in first-arrival order, duplicates (resends) removed.
fn first_arrival_record_ids(records: &[Value]) -> Vec<i64> {
    let mut seen = BTreeSet::new();
    records
        .iter()
        .filter(|r| seen.insert(r["event_id"].as_str().unwrap_or("").to_string()))
        .filter_map(|r| r["record_id"].as_i64())
        .collect()
}

/// The event ids of pushed records as the bridge must compute them (strangers' by hash).
fn expected_event_ids(pushed: &[Value]) -> BTreeSet<String> {
    pushed
        .iter()
        .map(|r| {
            let data = r.as_object().expect("a pushed record is an object");
            face2mqtt::pipeline::record::normalize(
                "front-door",
                data,
                face2mqtt::pipeline::record::Source::Live,
            )
            .expect("normalizes")
            .record
            .event_id
        })
        .collect()
}

fn pushed_ids(pushed: &[Value]) -> BTreeSet<String> {
    pushed
        .iter()
        .map(|r| format!("front-door-{}-{}", r["signTime"], r["id"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_records_survive_a_broker_outage_in_order() {
    let mut broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, PASSWORD));
    wait_link(&s.sim, 1).await;

    let mut pushed = Vec::new();
    let mut seen = Vec::new();
    for i in 0..1000 {
        if i == 300 {
            broker.stop();
        }
        if i == 700 {
            broker.restart();
        }
        pushed.push(s.sim.push(Some(PersonType::Staff)));
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let want = pushed_ids(&pushed);
    collect_records(
        &mut sub,
        &mut seen,
        &want,
        Duration::from_secs(120),
        &bridge,
    )
    .await;
    let records = records_of(&seen);
    let order = first_arrival_record_ids(&records);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "records arrived out of order"
    );
    // The reader never waits on MQTT: the broker outage must not cost the terminal link.
    // (Records may still say "backfill": the backfill at link-up covers "now" and can fetch the
    // first pushes before their live copies are spooled; dedupe keeps one copy.)
    let log = bridge.log_text();
    assert!(
        !log.contains("record push link lost"),
        "the link dropped:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_stream_loses_nothing_after_restart() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let mut bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, PASSWORD));
    wait_link(&s.sim, 1).await;

    let mut pushed = Vec::new();
    for i in 0..400 {
        if i == 200 {
            bridge.kill9();
        }
        if i == 300 {
            bridge.spawn();
        }
        pushed.push(s.sim.push(if i % 5 == 0 {
            Some(PersonType::Stranger)
        } else {
            Some(PersonType::Staff)
        }));
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Every event_id, strangers' hashes included, computed from what the terminal pushed: a
    // duplicate (the same id again) can then never stand in for a lost record.
    let want = expected_event_ids(&pushed);
    let strangers = want.iter().filter(|id| id.contains("-s")).count();
    assert_eq!(
        strangers,
        pushed.iter().filter(|r| r["id"] == 0).count(),
        "two strangers with one event_id"
    );
    let mut seen = Vec::new();
    collect_records(
        &mut sub,
        &mut seen,
        &want,
        Duration::from_secs(120),
        &bridge,
    )
    .await;
    let records = records_of(&seen);
    let got = event_ids(&records);
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "event ids nobody pushed"
    );
    assert!(
        records.iter().any(|r| r["source"] == "backfill"),
        "the records pushed while it was dead came by backfill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_is_detected_and_the_gap_is_backfilled() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, PASSWORD));
    wait_link(&s.sim, 1).await;
    let before: Vec<Value> = (0..3)
        .map(|_| s.sim.push(Some(PersonType::Visitor)))
        .collect();
    let mut seen = Vec::new();
    collect_records(
        &mut sub,
        &mut seen,
        &pushed_ids(&before),
        Duration::from_secs(20),
        &bridge,
    )
    .await;

    s.sim.set_silent(true);
    let during: Vec<Value> = (0..5)
        .map(|_| s.sim.push(Some(PersonType::Staff)))
        .collect();
    let mark = seen.len();
    // dead_after is 1 s in this config: a deadline on the event, with room for a loaded machine.
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(15),
        "availability offline (the silent link detected as dead)",
        |m| {
            m[mark..]
                .iter()
                .any(|(t, p, _)| t == "face2mqtt/front-door/availability" && p == b"offline")
        },
    )
    .await;
    s.sim.set_silent(false);

    let want = pushed_ids(&during);
    collect_records(&mut sub, &mut seen, &want, Duration::from_secs(30), &bridge).await;
    for r in records_of(&seen)
        .iter()
        .filter(|r| want.contains(r["event_id"].as_str().unwrap_or("")))
    {
        assert_eq!(r["source"], "backfill", "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_pushed_while_the_bridge_was_stopped_arrive_by_backfill() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let mut bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, PASSWORD));
    wait_link(&s.sim, 1).await;
    let first = vec![s.sim.push(Some(PersonType::Staff))];
    let mut seen = Vec::new();
    collect_records(
        &mut sub,
        &mut seen,
        &pushed_ids(&first),
        Duration::from_secs(20),
        &bridge,
    )
    .await;

    assert!(bridge.stop(), "a clean stop exits 0");
    wait_link(&s.sim, 0).await;
    let mark = seen.len();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(10),
        "offline after a clean stop",
        |m| {
            m[mark..]
                .iter()
                .any(|(t, p, _)| t == "face2mqtt/bridge/state" && p == br#"{"state":"offline"}"#)
        },
    )
    .await;
    let offline: Vec<Value> = (0..5)
        .map(|_| s.sim.push(Some(PersonType::Blacklist)))
        .collect();
    bridge.spawn();
    let want = pushed_ids(&offline);
    collect_records(&mut sub, &mut seen, &want, Duration::from_secs(30), &bridge).await;
    let records = records_of(&seen);
    for r in records
        .iter()
        .filter(|r| want.contains(r["event_id"].as_str().unwrap_or("")))
    {
        assert_eq!(r["source"], "backfill");
    }
    // The first record was not published a second time by the backfill of the restart.
    let firsts = records
        .iter()
        .filter(|r| pushed_ids(&first).contains(r["event_id"].as_str().unwrap_or("")))
        .count();
    assert_eq!(firsts, 1, "a record seen live is not backfilled again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_mistyped_frames_are_skipped_and_the_stream_goes_on() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, PASSWORD));
    wait_link(&s.sim, 1).await;
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(20),
        "availability online",
        |m| {
            m.iter()
                .any(|(t, p, _)| t == "face2mqtt/front-door/availability" && p == b"online")
        },
    )
    .await;

    s.sim.push_raw(Message::text("{this is not json"));
    s.sim.push_raw(Message::text(
        r#"{"code":30000,"message":"push record","data":"not an object"}"#,
    ));
    s.sim.push_raw(Message::text(
        r#"{"code":30000,"data":{"id":"abc","signTime":"yesterday"}}"#,
    ));
    s.sim.push_raw(Message::binary(vec![0xFF, 0x00, 0x13]));
    s.sim.push_raw(Message::text("x".repeat(2 * 1024 * 1024)));
    // A valid record in a 300 KB frame (later firmware may send more): it must pass.
    let mut big = s.sim.push(Some(PersonType::Staff));
    big["description"] = Value::String("d".repeat(300 * 1024));
    big["id"] = Value::from(9_000_001);
    s.sim.push_raw(Message::text(
        serde_json::json!({"code": 30000, "message": "push\u{a0}record", "desc": "", "data": big})
            .to_string(),
    ));
    let mut good = vec![s.sim.push(Some(PersonType::Staff))];
    good.push(serde_json::json!({"signTime": big["signTime"], "id": 9_000_001}));
    collect_records(
        &mut sub,
        &mut seen,
        &pushed_ids(&good),
        Duration::from_secs(20),
        &bridge,
    )
    .await;
    let online_at = seen
        .iter()
        .position(|(t, p, _)| t == "face2mqtt/front-door/availability" && p == b"online")
        .expect("online seen");
    assert!(
        !seen[online_at..]
            .iter()
            .any(|(t, p, _)| t == "face2mqtt/front-door/availability" && p == b"offline"),
        "bad frames must not cost the link"
    );
    let log = bridge.log_text();
    // Rate-limited per kind: "skipped a frame" and "skipped a record" are each written once.
    assert!(
        log.contains("skipped a frame") && log.contains("skipped a record"),
        "bad frames are logged:\n{log}"
    );
    // Over the 1 MiB limit and unreadable: it may have been a record, so backfill looks again.
    assert!(
        log.contains("a frame was lost: frame of 2097152 bytes over the"),
        "the oversized frame says so:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_json_and_snapshot_are_published_as_documented() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let _bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, PASSWORD));
    wait_link(&s.sim, 1).await;
    let pushed = s.sim.push(Some(PersonType::Stranger));
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(20),
        "a record and its snapshot",
        |m| !records_of(m).is_empty() && m.iter().any(|(t, _, _)| t.ends_with("/snapshot")),
    )
    .await;
    let r = &records_of(&seen)[0];
    assert_eq!(r["person"]["type"], "stranger");
    assert_eq!(r["record_id"], 0);
    assert_eq!(r["timestamp"], pushed["signTime"]);
    assert_eq!(r["snapshot"], true);
    assert!(r["event_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("front-door-") && id.contains("-s")));
    let (_, jpeg, _) = seen
        .iter()
        .find(|(t, _, _)| t == "face2mqtt/front-door/snapshot")
        .expect("snapshot");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "raw JPEG bytes, not base64");
    assert!(jpeg.len() > 30_000);
    let (_, state, _) = seen
        .iter()
        .find(|(t, _, _)| t == "face2mqtt/bridge/state")
        .expect("bridge state");
    assert_eq!(state, br#"{"state":"online"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_logged_as_such_and_never_leaks() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, "sup3r-s3cret-pw"));
    let log_path = bridge.log.clone();
    eventually("the refusal is logged", Duration::from_secs(20), || {
        let p = log_path.clone();
        async move {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("password is wrong")
        }
    })
    .await;
    let log = bridge.log_text();
    assert!(log.contains("20002"), "{log}");
    assert!(
        !log.contains("sup3r-s3cret-pw") && !log.contains("sign="),
        "a secret reached the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_terminals_trouble_never_stalls_another() {
    let broker = Mosquitto::start();
    let good = default_simulator().await;
    let bad = default_simulator().await;
    bad.sim.set_silent(true);
    bad.sim.set_http_delay(Duration::from_secs(30));
    let second = format!(
        "\n[[terminal]]\nid = \"back-door\"\nhost = \"127.0.0.1\"\nhttp_port = {}\nws_port = {}\npassword = \"{PASSWORD}\"\nrequest_timeout = \"1s\"\n",
        bad.sim.http_addr().port(),
        bad.sim.ws_addr().port()
    );
    let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
    let bridge = Bridge::start(&BridgeSetup {
        extra_terminal_keys: &second,
        ..BridgeSetup::new(broker.port, &good.sim, PASSWORD)
    });
    wait_link(&good.sim, 1).await;
    let pushed: Vec<Value> = (0..20)
        .map(|_| good.sim.push(Some(PersonType::Staff)))
        .collect();
    let mut seen = Vec::new();
    collect_records(
        &mut sub,
        &mut seen,
        &pushed_ids(&pushed),
        Duration::from_secs(20),
        &bridge,
    )
    .await;
    assert_eq!(
        *bad.sim.ws_clients().borrow(),
        0,
        "the other terminal was down all along"
    );
}

/// The size policy fits records before they are spooled; entries an older version spooled over
/// MQTT's packet limit (the spool is on disk: outside input) go out fitted now, or, when they
/// are not a record at all, to quarantine: neither blocks the records behind it or ends the
/// session. Judged on the broker and by `spool status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_spooled_over_the_packet_limit_by_an_older_version_go_out_fitted_or_to_quarantine()
{
    use face2mqtt::pipeline::record::{Normalized, Record};
    use face2mqtt::pipeline::spool::{Encoded, Incoming, Spool};
    let d = tempfile::tempdir().expect("tempdir");
    let spool = d.path().join("spool");
    {
        let s = Spool::open(&spool, 64 << 20).expect("spool");
        let mut old = Record::bare("front-door", "front-door-1700000000-1", 1_700_000_000);
        old.extra
            .insert("description".into(), Value::from("d".repeat(600 << 10)));
        let not_a_record = serde_json::json!({
            "event_id": "front-door-1700000000-2", "pad": "p".repeat(600 << 10),
        });
        for (event_id, json) in [
            ("front-door-1700000000-1", old.to_json()),
            ("front-door-1700000000-2", not_a_record.to_string()),
        ] {
            let big = Incoming {
                event_id: event_id.into(),
                sign_time: 1_700_000_000,
                json,
                photo: None,
                backfill: false,
            };
            s.append_encoded(&Encoded::new("front-door", &big, 1), true)
                .expect("append");
        }
        let next = Record::bare("front-door", "front-door-1700000001-3", 1_700_000_001);
        s.append("front-door", &Normalized::of(next), None, true)
            .expect("append");
        s.flush().expect("flush");
        s.close().expect("close");
    }
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start_with_spool(&BridgeSetup::new(broker.port, &s.sim, PASSWORD), &spool);
    let mut seen = Vec::new();
    let fitted = record_seen(&mut sub, &mut seen, "front-door-1700000000-1").await;
    assert_eq!(fitted["truncated"], true);
    assert!(fitted.get("extra").is_none(), "the oversized field went");
    record_seen(&mut sub, &mut seen, "front-door-1700000001-3").await;
    eventually(
        "the entry that is no record in quarantine",
        Duration::from_secs(20),
        || async { quarantined(&bridge) == 1 },
    )
    .await;
    assert!(
        !records_of(&seen)
            .iter()
            .any(|r| r["event_id"] == "front-door-1700000000-2"),
        "what cannot be fitted never reaches the broker"
    );
    // The session held: a record pushed now still goes out.
    let pushed = s.sim.push(Some(PersonType::Staff));
    record_seen(&mut sub, &mut seen, &event_id_of(&pushed)).await;
}
