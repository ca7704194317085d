//! Hostile and careless input end to end (issue 9): a real Mosquitto, the in-process simulator
//! and the bridge binary. Each test is one finding of the issue; each failed on the code before.

mod common;

use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::{PersonType, RecordQuery, TerminalError};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const SECTIONS: &str = "[commands]\nrequire_synchronized_clock = false\n";

struct Rig {
    broker: Mosquitto,
    sim: Sim,
    sub: Subscriber,
    bridge: Bridge,
    seen: Vec<(String, Vec<u8>, bool)>,
}

/// Broker, simulator (optionally with records stored before the bridge starts) and a bridge
/// whose link is up and whose request subscription is in place.
async fn rig_with(before_start: impl FnOnce(&Sim)) -> Rig {
    let broker = Mosquitto::start();
    let sim = default_simulator().await;
    before_start(&sim);
    let sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&BridgeSetup {
        extra_sections: SECTIONS,
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    });
    let mut r = Rig {
        broker,
        sim,
        sub,
        bridge,
        seen: Vec::new(),
    };
    collect_until(
        &mut r.sub,
        &mut r.seen,
        Duration::from_secs(20),
        "bridge online and the terminal link up",
        |m| {
            m.iter()
                .any(|(t, p, _)| t == "face2mqtt/bridge/state" && p == br#"{"state":"online"}"#)
                && m.iter()
                    .any(|(t, p, _)| t == "face2mqtt/front-door/availability" && p == b"online")
        },
    )
    .await;
    r
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

impl Rig {
    /// Publishes a request and returns the response to it.
    async fn request(&mut self, cmd: &str, payload: &[u8]) -> Value {
        let topics = (
            format!("face2mqtt/front-door/request/{cmd}"),
            format!("face2mqtt/front-door/response/{cmd}"),
        );
        request_answered(
            self.broker.port,
            &mut self.sub,
            &mut self.seen,
            (&topics.0, &topics.1),
            payload,
            false,
        )
        .await
    }

    /// Waits for the record with this event id and returns it.
    async fn record(&mut self, event_id: &str) -> Value {
        record_seen(&mut self.sub, &mut self.seen, event_id).await
    }
}

fn event_id(pushed: &Value) -> String {
    format!("front-door-{}-{}", pushed["signTime"], pushed["id"])
}

/// Finding 1: each of these panicked the ingest task while formatting the time; the link then
/// never delivered a record again while `availability` still said online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_a_time_beyond_the_year_9999_is_refused_and_the_link_keeps_delivering() {
    let mut r = rig().await;
    for sign_time in [
        "1e30",
        "300000000000000",
        r#""253402300800000""#,
        "-5",
        "18446744073709551615",
    ] {
        r.sim.sim.push_raw(Message::text(format!(
            r#"{{"code":30000,"message":"push record","data":{{"id":77,"signTime":{sign_time},"name":"Mallory"}}}}"#
        )));
    }
    let good = r.sim.sim.push(Some(PersonType::Staff));
    r.record(&event_id(&good)).await;
    // The first may come by the link-up's backfill, which can overtake the push; the one after it
    // can only come over the link.
    let good = r.sim.sim.push(Some(PersonType::Staff));
    let rec = r.record(&event_id(&good)).await;
    assert_eq!(rec["source"], "live", "it came over the same link");
    assert!(
        !records_of(&r.seen).iter().any(|x| x["record_id"] == 77),
        "a record with an impossible time was published"
    );
    let log = r.bridge.log_text();
    // Rate-limited: the first is written, the rest counted (one line per interval).
    assert!(
        log.matches("not a time between 1970 and 9999").count() >= 1,
        "the refusal is logged:\n{log}"
    );
}

/// A terminal that floods garbage fills the journal one warning per frame (867,334 lines in
/// 30 s were measured); now one line per kind per interval, and records still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_flood_writes_a_few_lines_and_records_still_flow() {
    let mut r = rig().await;
    for i in 0..5000 {
        r.sim.sim.push_raw(Message::text(format!("garbage {i}")));
    }
    let good = r.sim.sim.push(Some(PersonType::Staff));
    r.record(&event_id(&good)).await;
    let log = r.bridge.log_text();
    let lines = log.matches("skipped a frame").count();
    assert!((1..=3).contains(&lines), "{lines} lines for 5000 frames");
}

/// Finding 1, backfill: the same value from `GET /api/record` killed the backfill task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_record_with_a_time_beyond_the_year_9999_is_refused_and_the_rest_arrive() {
    let mut good = Value::Null;
    let mut r = rig_with(|s| {
        good = s.sim.push(Some(PersonType::Staff));
        let now = good["signTime"].as_u64().expect("signTime");
        for (id, sign_time) in [(91, json!(1e30)), (92, json!("253402300800000"))] {
            let fields = json!({"id": id, "signTime": sign_time, "type": 1, "name": "Mallory"});
            if let Value::Object(m) = fields {
                s.sim.store_raw(m, now);
            }
        }
    })
    .await;
    let rec = r.record(&event_id(&good)).await;
    assert_eq!(rec["source"], "backfill");
    // And the backfill task is still alive: a later gap is filled too.
    r.sim.sim.close_links();
    let later = r.sim.sim.push(Some(PersonType::Visitor));
    r.record(&event_id(&later)).await;
    assert!(!records_of(&r.seen)
        .iter()
        .any(|x| x["record_id"] == 91 || x["record_id"] == 92));
}

/// Finding 2: `{"time":1e25}` panicked the command router; every later request and button
/// press was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_time_of_1e25_is_answered_bad_request_and_later_requests_still_run() {
    let mut r = rig().await;
    let resp = r.request("open", br#"{"time":1e25}"#).await;
    assert_eq!(resp["status"], "error");
    assert_eq!(resp["reason"], "bad_request");
    let resp = r.request("open", br#"{"transaction":"t-2"}"#).await;
    assert_eq!(resp, json!({"status": "ok", "transaction": "t-2"}));
    assert_eq!(r.sim.sim.opens().len(), 1);
}

/// Finding 3: any payload that was not a JSON object opened the door and answered ok. Also:
/// an oversized request is answered, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_are_not_requests_are_answered_bad_request_and_never_open_the_door() {
    let mut r = rig().await;
    let random: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let oversized = vec![b'x'; 100_000];
    let payloads: [&[u8]; 7] = [
        &random,
        b"xyzzy 123",
        b"[1,2]",
        b"null",
        br#"{"remark":"x","tiem":1}"#,
        b"reboot",
        &oversized,
    ];
    for p in payloads {
        let resp = r.request("open", p).await;
        assert_eq!(
            (resp["status"].as_str(), resp["reason"].as_str()),
            (Some("error"), Some("bad_request")),
            "{:?}: {resp}",
            String::from_utf8_lossy(&p[..p.len().min(20)])
        );
    }
    assert!(r.sim.sim.opens().is_empty(), "the door was opened");
    // The documented shapes still work, in any case.
    assert_eq!(r.request("open", b"open").await["status"], "ok");
    assert_eq!(r.sim.sim.opens().len(), 1);
}

/// Finding 8: a frame over the 1 MiB limit (a record with a 5 MB photo) was dropped whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_a_five_megabyte_photo_keeps_its_record_without_the_photo() {
    let mut r = rig().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let frame = format!(
        "{{\n\t\"code\":\t30000,\n\t\"message\":\t\"push\u{a0}record\",\n\t\"data\":\t{{\n\t\t\"userId\":\t\"E001\",\n\t\t\"name\":\t\"Ada\",\n\t\t\"id\":\t4242,\n\t\t\"signTime\":\t{now},\n\t\t\"type\":\t1,\n\t\t\"similarity\":\t93,\n\t\t\"signAvatar\":\t\"/9j/{}\"\n\t}}\n}}",
        "A".repeat(5 << 20)
    );
    r.sim.sim.push_raw(Message::text(frame));
    let rec = r.record(&format!("front-door-{now}-4242")).await;
    assert_eq!(rec["person"]["name"], "Ada");
    assert_eq!(rec["similarity"], 93);
    assert_eq!(rec["snapshot"], false);
    assert_eq!(rec["truncated"], true);
    // The link survived it.
    let good = r.sim.sim.push(Some(PersonType::Staff));
    assert_eq!(r.record(&event_id(&good)).await["source"], "live");
}

/// Finding 10: backfill keeps only the newest photo, but the older records still said
/// `"snapshot": true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_records_whose_photo_was_dropped_say_snapshot_false() {
    let mut pushed = Vec::new();
    let mut r = rig_with(|s| {
        for _ in 0..3 {
            pushed.push(s.sim.push(Some(PersonType::Staff)));
        }
    })
    .await;
    let mut records = Vec::new();
    for p in &pushed {
        records.push(r.record(&event_id(p)).await);
    }
    let newest = records
        .iter()
        .filter_map(|x| x["record_id"].as_u64())
        .max()
        .expect("ids");
    for x in &records {
        assert_eq!(x["source"], "backfill");
        assert_eq!(
            x["snapshot"],
            json!(x["record_id"] == newest),
            "record {}: only the newest keeps its photo: {x}",
            x["record_id"]
        );
    }
}

/// Reads the next request's head from `s` (what follows it stays in `got`); `false` once the
/// client hangs up.
async fn request_head(s: &mut tokio::net::TcpStream, got: &mut Vec<u8>) -> bool {
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            got.drain(..at + 4);
            return true;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Something in a terminal's place that answers every HTTP call with `head` and then `chunk`
/// over and over, 50 MB in all.
async fn fake_terminal(head: &'static str, chunk: Vec<u8>) -> u16 {
    serve(move |mut s| {
        let chunk = chunk.clone();
        async move {
            let mut got = Vec::new();
            if !request_head(&mut s, &mut got).await {
                return;
            }
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // 50 MB, or until the client hangs up.
            for _ in 0..(50 << 20) / chunk.len() {
                if s.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// Listens on 127.0.0.1:0 and runs `handle` on each connection; returns the port.
async fn serve<F, Fut>(handle: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(handle(s));
        }
    });
    port
}

/// Finding 9: a 50 MB answer was read whole (363 MB RSS). Declared or not, it is refused at the
/// limit with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_answer_over_the_limit_is_a_clear_error() {
    // One chunk of 1022 spaces (0x3fe), chunked encoding: no length is declared.
    let mut chunk = b"3fe\r\n".to_vec();
    chunk.extend_from_slice(&[b' '; 0x3fe]);
    chunk.extend_from_slice(b"\r\n");
    let declared = fake_terminal(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\n\r\n{\"code\":200,\"data\":{\"data\":[\"",
        vec![b' '; 1024],
    )
    .await;
    let chunked = fake_terminal(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunk,
    )
    .await;
    for port in [declared, chunked] {
        let client = face2mqtt::integrations::terminal::TerminalClient::new(
            face2mqtt::integrations::terminal::Endpoint {
                host: "127.0.0.1".into(),
                http_port: port,
                ws_port: port,
                password: face2mqtt::secret::Secret::new(PASSWORD),
                timeout: Duration::from_secs(20),
            },
        );
        let e = client.information().await.expect_err("refused");
        assert!(
            matches!(e, TerminalError::TooLarge { .. }) && e.to_string().contains("larger than"),
            "{e}"
        );
        // A records page is tried again record by record; when not one fits, it is the error.
        let e = client
            .records(&RecordQuery::between(0, 10))
            .await
            .expect_err("refused");
        assert!(matches!(e, TerminalError::TooLarge { .. }), "{e}");
    }
}

/// Finding 9, backfill: a records page over the limit (one record with a 5 MB field among
/// others) costs only that record; the others still arrive and backfill completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_page_over_the_limit_costs_only_the_oversized_record() {
    let mut pushed = Vec::new();
    let mut r = rig_with(|s| {
        pushed.push(s.sim.push(Some(PersonType::Staff)));
        let now = pushed[0]["signTime"].as_u64().expect("signTime");
        let huge =
            json!({"id": 93, "signTime": now, "type": 1, "description": "d".repeat(5 << 20)});
        if let Value::Object(m) = huge {
            s.sim.store_raw(m, now);
        }
        pushed.push(s.sim.push(Some(PersonType::Visitor)));
    })
    .await;
    for p in &pushed {
        assert_eq!(r.record(&event_id(p)).await["source"], "backfill");
    }
    assert!(!records_of(&r.seen).iter().any(|x| x["record_id"] == 93));
    let log = r.bridge.log_text();
    assert!(log.contains("too large to fetch"), "{log}");
}

/// Each unknown command name was answered on a topic of its own (`response/<name>`): a client
/// could make the bridge publish to as many topics as it liked. Now one fixed topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_names_are_answered_on_one_fixed_topic() {
    let mut r = rig().await;
    for name in ["frobnicate", "x1", "x2"] {
        publish(
            r.broker.port,
            &format!("face2mqtt/front-door/request/{name}"),
            b"{}",
            false,
        )
        .await;
    }
    collect_until(
        &mut r.sub,
        &mut r.seen,
        Duration::from_secs(20),
        "three answers on response/unknown",
        |m| {
            m.iter()
                .filter(|(t, _, _)| t == "face2mqtt/front-door/response/unknown")
                .count()
                >= 3
        },
    )
    .await;
    let answer = r
        .seen
        .iter()
        .find(|(t, _, _)| t == "face2mqtt/front-door/response/unknown")
        .map(|(_, p, _)| serde_json::from_slice::<Value>(p).expect("json"))
        .expect("an answer");
    assert_eq!(answer["reason"], "bad_request");
    assert!(answer["error"]
        .as_str()
        .is_some_and(|e| e.contains("unknown command")));
    for name in ["frobnicate", "x1", "x2"] {
        let own = format!("face2mqtt/front-door/response/{name}");
        assert!(!r.seen.iter().any(|(t, _, _)| *t == own), "{own}");
    }
}

/// A numeric `transaction` came back changed (`1.50` as `"1.5"`, 300 digits as `"1e+300"`):
/// now it is echoed as sent, same JSON type and text, and over 255 characters in any form is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_echoed_exactly_as_sent() {
    let mut r = rig().await;
    for sent in ["1.50", "\"t-1\"", "12345678901234567890123"] {
        let mark = r.seen.len();
        let resp = r
            .request(
                "sync_time",
                format!("{{\"transaction\":{sent}}}").as_bytes(),
            )
            .await;
        assert_eq!(resp["status"], "ok", "{resp}");
        let raw = r.seen[mark..]
            .iter()
            .find(|(t, _, _)| t == "face2mqtt/front-door/response/sync_time")
            .map(|(_, p, _)| String::from_utf8_lossy(p).into_owned())
            .expect("the answer");
        assert!(raw.contains(&format!("\"transaction\":{sent}")), "{raw}");
    }
    let digits = "9".repeat(300);
    let resp = r
        .request(
            "sync_time",
            format!("{{\"transaction\":{digits}}}").as_bytes(),
        )
        .await;
    assert_eq!(resp["reason"], "bad_request", "{resp}");
}

/// A terminal that answers every `/api/user/list` with the same page of ten users, each with a
/// photo and a `note` of `note` bytes, and says there are `pages` pages. Keeps each connection open for the next request.
async fn roster_terminal(pages: u64, note: usize) -> u16 {
    let users: Vec<Value> = (0..10)
        .map(|i| json!({"userId": format!("v{i}"), "userType": 2, "name": "Ann", "photo": "/9j/".repeat(1_000), "note": "n".repeat(note)}))
        .collect();
    let body = json!({"code": 200, "message": "OK", "desc": "", "data": {
        "total": pages * 10, "pageNum": 1, "pageSize": 10, "totalPage": pages, "data": users,
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    serve(move |mut s| {
        let answer = answer.clone();
        async move {
            let mut got = Vec::new();
            while request_head(&mut s, &mut got).await {
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// The visitors sensor reads the terminal's whole roster every `people.refresh`: a terminal
/// that always says there is another page must not make that read endless (or its memory
/// unbounded), and the roster is kept without its ~43 KB photos.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_is_read_without_photos_and_a_terminal_that_always_has_another_page_is_an_error() {
    use face2mqtt::integrations::terminal::{
        Endpoint, TerminalClient, MAX_ROSTER_BYTES, MAX_USERS,
    };
    let client = |port| {
        TerminalClient::new(Endpoint {
            host: "127.0.0.1".into(),
            http_port: port,
            ws_port: port,
            password: face2mqtt::secret::Secret::new(PASSWORD),
            timeout: Duration::from_secs(20),
        })
    };
    let users = client(roster_terminal(3, 0).await)
        .all_users(Some(2))
        .await
        .expect("three pages");
    assert_eq!(users.len(), 30);
    assert!(users.iter().all(|u| u.photo.is_none() && u.name == "Ann"));
    let e = client(roster_terminal(1_000_000_000, 0).await)
        .all_users(Some(2))
        .await
        .expect_err("endless");
    assert!(
        e.to_string()
            .contains(&format!("more than {MAX_USERS} users")),
        "{e}"
    );
    // Fewer users, each with a large field the roster keeps: bounded in bytes, not only in count.
    let e = client(roster_terminal(1_000_000_000, 100_000).await)
        .all_users(Some(2))
        .await
        .expect_err("endless and large");
    assert!(e.to_string().contains("users of more than 32MiB"), "{e}");
    assert_eq!(MAX_ROSTER_BYTES, 32 << 20);
}
