//! The signed client against the simulator, for every endpoint and each error path.

mod common;

use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::{
    push, ApiCode, PersonType, RecordQuery, TerminalError, User, UserQuery,
};
use face2mqtt::simulator::SimConfig;
use futures_util::StreamExt;
use serde_json::json;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn open_reaches_the_terminal_with_its_remark() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    c.open(Some("delivery at gate")).await.expect("opens");
    c.open(None).await.expect("opens without remark");
    let opens = s.sim.opens();
    assert_eq!(opens.len(), 2);
    assert_eq!(opens[0].remark.as_deref(), Some("delivery at gate"));
    assert_eq!(opens[1].remark, None);
}

#[tokio::test]
async fn sync_time_sets_the_terminals_clock_to_ours() {
    let s = default_simulator().await;
    s.sim.set_clock_skew(-200_000);
    let c = client_for(&s.sim, PASSWORD, T);
    c.sync_time().await.expect("syncs");
    assert_eq!(s.sim.sync_times().len(), 1);
    assert!(
        s.sim.clock_skew_ms().abs() < 2_000,
        "skew after sync: {}",
        s.sim.clock_skew_ms()
    );
}

#[tokio::test]
async fn reboot_is_counted_and_the_ports_go_down_and_come_back() {
    let s = simulator(SimConfig {
        reboot_downtime: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let c = client_for(&s.sim, PASSWORD, T);
    let mut up = s.sim.up();
    c.reboot().await.expect("reboot accepted");
    assert_eq!(s.sim.reboots(), 1);
    tokio::time::timeout(T, up.wait_for(|u| !*u))
        .await
        .expect("goes down")
        .expect("watch");
    tokio::time::timeout(T, up.wait_for(|u| *u))
        .await
        .expect("comes back")
        .expect("watch");
    c.information()
        .await
        .expect("answers again after the reboot");
}

#[tokio::test]
async fn information_and_settings_objects_round_trip_with_unknown_fields() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    let info = c.information().await.expect("information");
    assert_eq!(info.model.as_deref(), Some("AATSS V2 PRO"));
    assert!(info.device_id.is_some());

    let mut net = c.network().await.expect("network");
    assert!(net.contains_key("ipAddress"));
    net.insert("ipAddress".into(), json!("10.1.2.3"));
    c.set_network(&net).await.expect("networkcfg");
    assert_eq!(
        c.network().await.expect("network")["ipAddress"],
        json!("10.1.2.3")
    );

    let mut face = c.smart_face().await.expect("smartface");
    assert!(
        face.contains_key("Hacknessenble"),
        "firmware spelling is kept"
    );
    face.insert("futureFirmwareKnob".into(), json!(7));
    c.set_smart_face(&face).await.expect("smartfacecfg");
    assert_eq!(
        c.smart_face().await.expect("smartface")["futureFirmwareKnob"],
        json!(7)
    );

    let mut per = c.peripheral().await.expect("perpara");
    per.insert("unlockOuttime".into(), json!(50));
    c.set_peripheral(&per).await.expect("perparacfg");
    assert_eq!(
        c.peripheral().await.expect("perpara")["unlockOuttime"],
        json!(50)
    );

    assert_eq!(
        c.json_cmd(&json!({"cmd": "ping"})).await.expect("jsonCmd"),
        json!({})
    );
}

#[tokio::test]
async fn users_are_added_updated_listed_by_page_and_deleted() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    let before = c.all_users(None).await.expect("list").len();
    let user = User {
        user_id: "V100".into(),
        user_type: 2,
        name: "Visitor Vera".into(),
        ..User::default()
    };
    c.add_user(&user).await.expect("add");
    let err = c.add_user(&user).await.expect_err("duplicate refused");
    assert_eq!(err.api_code(), Some(ApiCode::ParamInvalid));

    let mut changed = user.clone();
    changed.name = "Vera V.".into();
    c.update_user(&changed).await.expect("update");

    let page = c
        .list_users(&UserQuery {
            page: 1,
            size: 10,
            ..UserQuery::default()
        })
        .await
        .expect("page 1");
    assert_eq!(page.items.len(), 10, "pages hold at most 10");
    assert_eq!(page.total as usize, before + 1);
    let all = c.all_users(None).await.expect("all pages");
    assert_eq!(all.len(), before + 1);
    assert!(all
        .iter()
        .any(|u| u.user_id == "V100" && u.name == "Vera V."));
    let visitors = c
        .all_users(Some(PersonType::Visitor.code()))
        .await
        .expect("visitors");
    assert!(
        visitors.iter().all(|u| u.user_type == 2) && visitors.iter().any(|u| u.user_id == "V100")
    );

    c.delete_user("V100").await.expect("delete");
    let err = c.delete_user("V100").await.expect_err("already gone");
    assert_eq!(err.api_code(), Some(ApiCode::UserNotExists));
    let err = c
        .update_user(&changed)
        .await
        .expect_err("update of a missing user");
    assert_eq!(err.api_code(), Some(ApiCode::UserNotExists));
    c.delete_user("all").await.expect("delete all");
    assert!(c.all_users(None).await.expect("list").is_empty());
}

#[tokio::test]
async fn records_are_listed_newest_first_across_pages() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    for _ in 0..25 {
        s.sim.push(Some(PersonType::Staff));
    }
    s.sim.push(Some(PersonType::Stranger));
    let now = face2mqtt::integrations::terminal::sign::now_ms() / 1000;
    let mut q = RecordQuery::between(now - 60, now + 60);
    q.size = 10;
    let first = c.records(&q).await.expect("page 1");
    assert_eq!(first.total, 26);
    assert_eq!(first.total_pages, 3);
    assert_eq!(
        first.items[0]["type"],
        json!(-1),
        "newest (the stranger) first"
    );
    q.page = 3;
    let last = c.records(&q).await.expect("page 3");
    assert_eq!(last.items.len(), 6);
    assert_eq!(last.items.last().map(|r| r["id"].clone()), Some(json!(1)));
    q.person_type = PersonType::Stranger.code();
    q.page = 1;
    assert_eq!(c.records(&q).await.expect("strangers").total, 1);
    let empty = c
        .records(&RecordQuery::between(1, 2))
        .await
        .expect("empty range");
    assert_eq!(empty.total, 0);
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_code_10005() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, "wrong", T);
    let err = c.open(None).await.expect_err("refused");
    assert_eq!(err.api_code(), Some(ApiCode::SignatureFailed));
    assert!(err.to_string().contains("password is wrong"), "{err}");
    assert!(
        s.sim.opens().is_empty(),
        "a refused open never reaches the door"
    );
}

#[tokio::test]
async fn a_skewed_terminal_clock_is_reported_as_code_10003() {
    let s = default_simulator().await;
    s.sim.set_clock_skew(6 * 60 * 1000);
    let c = client_for(&s.sim, PASSWORD, T);
    let err = c.information().await.expect_err("expired");
    assert_eq!(err.api_code(), Some(ApiCode::RequestExpired));
    assert!(err.to_string().contains("clocks"), "{err}");
}

#[tokio::test]
async fn an_unreachable_terminal_is_reported_as_such() {
    let port = unused_port();
    let c = face2mqtt::integrations::terminal::TerminalClient::new(
        face2mqtt::integrations::terminal::Endpoint {
            host: "127.0.0.1".into(),
            http_port: port,
            ws_port: port,
            password: face2mqtt::secret::Secret::new(PASSWORD),
            timeout: T,
        },
    );
    let err = c.open(None).await.expect_err("unreachable");
    assert!(matches!(err, TerminalError::Unreachable { .. }), "{err:?}");
    let err = push::connect(&c, T).await.expect_err("unreachable");
    assert!(
        matches!(err, push::PushError::Unreachable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_terminal_times_out_at_the_deadline() {
    let s = default_simulator().await;
    s.sim.set_http_delay(Duration::from_secs(3));
    let c = client_for(&s.sim, PASSWORD, Duration::from_millis(300));
    let err = c.open(None).await.expect_err("times out");
    assert!(matches!(err, TerminalError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn an_injected_error_code_is_typed_and_idempotent_reads_retry_with_fresh_signatures() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    s.sim.fail_http(40001, 1);
    let err = c.open(None).await.expect_err("not supported");
    assert_eq!(err.api_code(), Some(ApiCode::NotSupport));
    // Two transient failures, then success: the read is retried (each attempt signed anew).
    s.sim.fail_http(503, 2);
    c.information().await.expect("retried through two 503s");
    // An open is never retried.
    s.sim.fail_http(503, 1);
    let err = c.open(None).await.expect_err("not retried");
    assert!(
        matches!(err, TerminalError::HttpStatus { status: 503, .. }),
        "{err:?}"
    );
    assert!(s.sim.opens().is_empty());
}

#[tokio::test]
async fn the_record_push_answers_20000_then_pushes_cjson_frames() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    let mut ws = push::connect(&c, T).await.expect("connects");
    let mut clients = s.sim.ws_clients();
    tokio::time::timeout(T, clients.wait_for(|n| *n == 1))
        .await
        .expect("registered")
        .expect("watch");
    s.sim.push(Some(PersonType::Stranger));
    let frame = loop {
        match tokio::time::timeout(T, ws.next())
            .await
            .expect("a frame")
            .expect("open")
            .expect("ok")
        {
            tokio_tungstenite::tungstenite::Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    assert!(frame.starts_with("{\n\t\"code\":\t30000,\n\t\"message\":\t\"push\u{a0}record\",\n\t\"desc\":\t\"\",\n\t\"data\":\t{\n\t\t\"startTime\":\t0,\n\t\t\"userId\":\t\"\","), "{}", &frame[..200]);
    assert!(frame.ends_with("\n\t}\n}"), "no final newline");
    assert!(frame.contains("\t\t\"photo\":\t\"null\",\n\t\t\"id\":\t0,\n"));
    assert!(frame.contains("\t\t\"Temperatureunit\":\t"));
    let v: serde_json::Value = serde_json::from_str(&frame).expect("valid JSON");
    let photo = v["data"]["signAvatar"].as_str().expect("bare base64 photo");
    assert!(!photo.starts_with("data:") && !photo.contains('\n'));
    let jpeg = face2mqtt::pipeline::record::decode_photo(photo).expect("a JPEG");
    assert!(
        (36_000..52_000).contains(&jpeg.len()),
        "photo of {} bytes",
        jpeg.len()
    );
    let t = v["data"]["temperature"].as_f64().expect("temperature");
    let printed = frame
        .split("\"temperature\":\t")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("printed");
    // cJSON prints a whole number as `%d` (37.0 is "37"), any other as `%f`: six decimals with
    // float32 noise.
    let expected = if t.fract() == 0.0 {
        format!("{}", t as i64)
    } else {
        format!("{t:.6}")
    };
    assert_eq!(printed, expected, "cJSON's print_number");
}

#[tokio::test]
async fn queued_pushes_count_the_frames_a_link_has_not_been_sent_yet() {
    let s = default_simulator().await;
    s.sim.push(Some(PersonType::Staff));
    assert_eq!(s.sim.queued_pushes(), 0, "without a link nothing is queued");
    let c = client_for(&s.sim, PASSWORD, T);
    let mut ws = push::connect(&c, T).await.expect("connects");
    wait_link(&s.sim, 1).await;
    // A client that does not read: ~60 KB frames fill the socket buffers, then wait in the queue.
    for _ in 0..200 {
        s.sim.push(Some(PersonType::Staff));
    }
    eventually("frames wait for the link", T, || async {
        s.sim.queued_pushes() > 0
    })
    .await;
    let mut read = 0;
    while read < 200 {
        match tokio::time::timeout(T, ws.next()).await.expect("a frame") {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => read += 1,
            Some(Ok(_)) => {}
            other => panic!("link ended: {other:?}"),
        }
    }
    assert_eq!(s.sim.queued_pushes(), 0, "every frame was sent");
}

#[tokio::test]
async fn the_record_push_refuses_a_wrong_password_with_20002() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, "wrong", T);
    let err = push::connect(&c, T).await.expect_err("refused");
    assert!(
        matches!(
            err,
            push::PushError::Refused {
                code: ApiCode::UserNotMatch,
                ..
            }
        ),
        "{err:?}"
    );
    s.sim.set_refuse_auth(true);
    let err = push::connect(&client_for(&s.sim, PASSWORD, T), T)
        .await
        .expect_err("refused by fault");
    assert!(err.is_auth());
}

#[tokio::test]
async fn a_silent_terminal_never_answers_the_handshake() {
    let s = default_simulator().await;
    s.sim.set_silent(true);
    let c = client_for(&s.sim, PASSWORD, T);
    let err = push::connect(&c, Duration::from_millis(300))
        .await
        .expect_err("silent");
    assert!(matches!(err, push::PushError::Timeout { .. }), "{err:?}");
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_stranger_enrolled_as_a_visitor_from_their_capture_is_recognized_by_name() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    let stranger = s.sim.push(Some(PersonType::Stranger));
    assert_eq!(stranger["type"], json!(-1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mut visitor = User {
        user_id: "V200".into(),
        user_type: PersonType::Visitor.code(),
        name: "Grace".into(),
        photo: Some(
            stranger["signAvatar"]
                .as_str()
                .expect("capture")
                .to_string(),
        ),
        ..User::default()
    };
    visitor.extra.insert("startTime".into(), json!(now - 60));
    visitor.extra.insert("endTime".into(), json!(now + 3600));
    c.add_user(&visitor).await.expect("enrolled");

    let again = s
        .sim
        .push_face(s.sim.newest_capture().expect("the stranger's face"));
    assert_eq!(again["type"], json!(2));
    assert_eq!(again["name"], json!("Grace"));
    assert_eq!(again["userId"], json!("V200"));

    // The window closes: the same face is a stranger again.
    visitor.extra.insert("endTime".into(), json!(now - 1));
    c.update_user(&visitor).await.expect("updated");
    let later = s
        .sim
        .push_face(s.sim.newest_capture().expect("the face again"));
    assert_eq!(later["type"], json!(-1));
    assert_eq!(later["name"], json!(""));

    // Blacklisted: recognized, named, recorded as such.
    visitor.user_type = PersonType::Blacklist.code();
    c.update_user(&visitor).await.expect("updated");
    let blocked = s
        .sim
        .push_face(s.sim.newest_capture().expect("the face again"));
    assert_eq!(blocked["type"], json!(3));
    assert_eq!(blocked["name"], json!("Grace"));
}

#[tokio::test]
async fn an_enrolment_photo_without_a_face_or_not_a_jpeg_is_refused_in_the_terminals_words() {
    let s = default_simulator().await;
    let c = client_for(&s.sim, PASSWORD, T);
    let user = |photo: String| User {
        user_id: "V300".into(),
        user_type: PersonType::Visitor.code(),
        name: "Hedy".into(),
        photo: Some(photo),
        ..User::default()
    };
    let err = c
        .add_user(&user(b64(&tiny_jpeg(40))))
        .await
        .expect_err("no face");
    assert_eq!(err.api_code(), Some(ApiCode::NoFaceDetected));
    assert!(err.to_string().contains("No Face Detected"), "{err}");
    let err = c
        .add_user(&user(b64(b"GIF89a not a jpeg")))
        .await
        .expect_err("not a JPEG");
    assert_eq!(err.api_code(), Some(ApiCode::AvatarFileIllegal));
    c.add_user(&user(b64(&tiny_jpeg(200))))
        .await
        .expect("a picture big enough for a face");
}

/// One request to the simulator's control API: (status, body).
async fn control(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("control connects");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("sent");
    let mut out = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut out))
        .await
        .expect("answered")
        .expect("read");
    let status = out[9..12].parse().expect("status");
    let body = out.split("\r\n\r\n").nth(1).expect("a body");
    (status, serde_json::from_str(body).expect("JSON"))
}

#[tokio::test]
async fn the_control_api_brings_the_newest_face_back_and_refuses_a_face_with_a_type() {
    let s = default_simulator().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(face2mqtt::simulator::control::serve(
        s.sim.clone(),
        listener,
        s.shutdown.clone(),
    ));
    let c = client_for(&s.sim, PASSWORD, T);
    let (code, _) = control(addr, "/sim/push", r#"{"type":"stranger"}"#).await;
    assert_eq!(code, 200);
    let face = s.sim.newest_capture().expect("a capture");
    c.add_user(&User {
        user_id: "B1".into(),
        user_type: PersonType::Blacklist.code(),
        name: "Mallory".into(),
        photo: Some(b64(&face)),
        ..User::default()
    })
    .await
    .expect("enrolled");
    let (code, v) = control(addr, "/sim/push", r#"{"face":"last"}"#).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["pushed"][0]["type"], json!(3));
    assert_eq!(v["pushed"][0]["name"], json!("Mallory"));
    let shown = format!(r#"{{"face":"{}"}}"#, b64(&face));
    let (_, v) = control(addr, "/sim/push", &shown).await;
    assert_eq!(v["pushed"][0]["name"], json!("Mallory"));

    let (code, v) = control(addr, "/sim/push", r#"{"face":"last","type":"staff"}"#).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = control(addr, "/sim/push", r#"{"face":"R0lGODlh"}"#).await;
    assert_eq!(code, 400, "{v}");
}
