//! Commands end to end: MQTT request → bridge → signed call on the simulator → response topic.
//! And what must NOT open the door.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

/// One message a subscriber saw: topic, payload, retain flag.
type Msg = (String, Vec<u8>, bool);

const SECTIONS: &str = "[commands]\nrequire_synchronized_clock = false\n";

struct Rig {
    broker: Mosquitto,
    sim: Sim,
    sub: Subscriber,
    bridge: Bridge,
    seen: Vec<(String, Vec<u8>, bool)>,
}

async fn rig(password: &str, terminal_keys: &str) -> Rig {
    let broker = Mosquitto::start();
    let sim = default_simulator().await;
    let sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&BridgeSetup {
        extra_sections: SECTIONS,
        extra_terminal_keys: terminal_keys,
        ..BridgeSetup::new(broker.port, &sim.sim, password)
    });
    let mut r = Rig {
        broker,
        sim,
        sub,
        bridge,
        seen: Vec::new(),
    };
    // Requests are only heard once the bridge is connected and subscribed: wait for its online.
    until_online(&mut r.sub, &mut r.seen).await;
    // `online` follows the bridge's SUBSCRIBE on the same connection, so requests are heard
    // from here on. With the right password the record link must come up as well.
    if password == PASSWORD {
        wait_link(&r.sim.sim, 1).await;
    }
    r
}

impl Rig {
    async fn request(&mut self, cmd: &str, payload: Value, retain: bool) -> Value {
        self.request_answered_on(cmd, cmd, payload, retain).await
    }

    /// A request on `request/<cmd>`, and its answer on `response/<answer>`.
    async fn request_answered_on(
        &mut self,
        cmd: &str,
        answer: &str,
        payload: Value,
        retain: bool,
    ) -> Value {
        let topics = (
            format!("face2mqtt/front-door/request/{cmd}"),
            format!("face2mqtt/front-door/response/{answer}"),
        );
        request_answered(
            self.broker.port,
            &mut self.sub,
            &mut self.seen,
            (&topics.0, &topics.1),
            payload.to_string().as_bytes(),
            retain,
        )
        .await
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_request_reaches_the_terminal_signed_with_its_remark() {
    let mut r = rig(PASSWORD, "").await;
    let resp = r
        .request(
            "open",
            json!({"remark": "courier", "transaction": "t-7"}),
            false,
        )
        .await;
    assert_eq!(resp, json!({"status": "ok", "transaction": "t-7"}));
    let opens = r.sim.sim.opens();
    assert_eq!(opens.len(), 1);
    assert_eq!(opens[0].remark.as_deref(), Some("courier"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistants_plain_press_payload_opens() {
    let mut r = rig(PASSWORD, "").await;
    let mark = r.seen.len();
    publish(
        r.broker.port,
        "face2mqtt/front-door/request/open",
        b"PRESS",
        false,
    )
    .await;
    collect_until(
        &mut r.sub,
        &mut r.seen,
        Duration::from_secs(20),
        "response",
        |m| {
            m[mark..]
                .iter()
                .any(|(t, _, _)| t == "face2mqtt/front-door/response/open")
        },
    )
    .await;
    assert_eq!(r.sim.sim.opens().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_answered_with_code_10005() {
    let mut r = rig("wrong", "").await;
    let resp = r.request("open", json!({}), false).await;
    assert_eq!(resp["status"], "error");
    assert_eq!(resp["code"], 10005);
    assert!(
        resp["error"]
            .as_str()
            .unwrap_or("")
            .contains("password is wrong"),
        "{resp}"
    );
    assert!(r.sim.sim.opens().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_open_waiting_on_the_broker_never_reaches_the_door() {
    // The dangerous case: a retained "open" sits on the broker and is replayed (retain=1) on
    // every (re)subscribe. Under MQTT 3.1.1 only such replays carry the retain flag.
    let broker = Mosquitto::start();
    publish(
        broker.port,
        "face2mqtt/front-door/request/open",
        br#"{"transaction":"r"}"#,
        true,
    )
    .await;
    let sim = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/+/response/#").await;
    let _bridge = Bridge::start(&BridgeSetup {
        extra_sections: SECTIONS,
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    });
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(20),
        "the refusal",
        |m| !m.is_empty(),
    )
    .await;
    let resp: Value = serde_json::from_slice(&seen[0].1).expect("json");
    assert_eq!(resp["reason"], "retained", "{resp}");
    assert_eq!(resp["transaction"], "r");
    assert!(
        resp["error"].as_str().unwrap_or("").contains("retained"),
        "{resp}"
    );
    assert!(
        sim.sim.opens().is_empty(),
        "the retained open did not reach the door"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_and_a_repeated_open_never_reach_the_door() {
    let mut r = rig(PASSWORD, "").await;
    let stale = r
        .request("open", json!({"time": now_secs() - 60}), false)
        .await;
    assert_eq!(stale["reason"], "stale", "{stale}");
    assert!(
        stale["error"].as_str().unwrap_or("").contains("old"),
        "{stale}"
    );
    assert!(
        r.sim.sim.opens().is_empty(),
        "the stale request did not open"
    );

    let first = r.request("open", json!({"time": now_secs()}), false).await;
    assert_eq!(first["status"], "ok");
    let second = r.request("open", json!({}), false).await;
    assert_eq!(second["reason"], "duplicate", "{second}");
    assert_eq!(
        r.sim.sim.opens().len(),
        1,
        "two opens inside the hold time ran once"
    );
    let _ = &r.bridge;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_terminal_refuses_open_but_reboot_and_sync_work_where_allowed() {
    let mut r = rig(PASSWORD, "commands = [\"reboot\", \"sync_time\"]\n").await;
    let resp = r.request("open", json!({}), false).await;
    assert_eq!(resp["reason"], "not_allowed");
    assert!(r.sim.sim.opens().is_empty());
    let resp = r.request("reboot", json!({}), false).await;
    assert_eq!(resp["status"], "ok");
    assert_eq!(r.sim.sim.reboots(), 1);
    // An unknown name is answered on one fixed topic, not on response/selfdestruct.
    let unknown = r
        .request_answered_on("selfdestruct", "unknown", json!({}), false)
        .await;
    assert_eq!(unknown["reason"], "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_is_synced_when_the_link_comes_up() {
    let r = rig(PASSWORD, "").await;
    let sim = r.sim.sim.clone();
    eventually("a syncTime after link-up", Duration::from_secs(20), || {
        let sim = sim.clone();
        async move { !sim.sync_times().is_empty() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_that_never_answers_delays_neither_the_other_terminal_nor_records() {
    let broker = Mosquitto::start();
    let good = default_simulator().await;
    let slow = default_simulator().await;
    slow.sim.set_http_delay(Duration::from_secs(60));
    let second = format!(
        "\n[[terminal]]\nid = \"back-door\"\nhost = \"127.0.0.1\"\nhttp_port = {}\nws_port = {}\npassword = \"{PASSWORD}\"\nrequest_timeout = \"5s\"\n",
        slow.sim.http_addr().port(),
        slow.sim.ws_addr().port()
    );
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let _bridge = Bridge::start(&BridgeSetup {
        extra_sections: SECTIONS,
        extra_terminal_keys: &second,
        ..BridgeSetup::new(broker.port, &good.sim, PASSWORD)
    });
    let mut seen = Vec::new();
    until_online(&mut sub, &mut seen).await;
    wait_link(&good.sim, 1).await;

    // The slow terminal gets an open it will sit on for its whole 5 s deadline...
    publish(
        broker.port,
        "face2mqtt/back-door/request/open",
        b"{}",
        false,
    )
    .await;
    // ...while the good one opens and delivers a record at once.
    publish(
        broker.port,
        "face2mqtt/front-door/request/open",
        b"{}",
        false,
    )
    .await;
    let record = good
        .sim
        .push(Some(face2mqtt::integrations::terminal::PersonType::Staff));
    let want = format!("front-door-{}-{}", record["signTime"], record["id"]);
    let front = "face2mqtt/front-door/response/open";
    let back = "face2mqtt/back-door/response/open";
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(30),
        "both responses and the front door's record",
        |m| {
            m.iter().any(|(t, _, _)| t == front)
                && m.iter().any(|(t, _, _)| t == back)
                && records_of(m).iter().any(|r| r["event_id"] == want.as_str())
        },
    )
    .await;
    // No stopwatch: the order of the events says it. The back door answers only when its 5 s
    // deadline runs out; had the front door waited on it, its answer and record would come after.
    let position = |pred: &dyn Fn(&Msg) -> bool| seen.iter().position(pred).expect("seen");
    let back_at = position(&|(t, _, _)| t == back);
    let front_at = position(&|(t, _, _)| t == front);
    let record_at = position(&|(t, p, _)| {
        t == "face2mqtt/front-door/record"
            && serde_json::from_slice::<Value>(p).is_ok_and(|r| r["event_id"] == want.as_str())
    });
    assert!(
        front_at < back_at,
        "the front door's answer waited on the back door"
    );
    assert!(
        record_at < back_at,
        "the front door's record waited on the back door"
    );
    let front_resp: Value = serde_json::from_slice(&seen[front_at].1).expect("json");
    assert_eq!(front_resp["status"], "ok", "{front_resp}");
    let back_resp: Value = serde_json::from_slice(&seen[back_at].1).expect("json");
    assert_eq!(back_resp["status"], "error", "{back_resp}");
    assert_eq!(back_resp["reason"], "timeout", "{back_resp}");
    assert_eq!(good.sim.opens().len(), 1);
}
