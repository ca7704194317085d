//! What each fuzz target does with its input, shared by the targets (fuzz_targets/*.rs) and the
//! project's regression tests (tests/fuzz_regressions.rs replays every saved finding through the
//! same function). Errors are fine everywhere; a panic is a finding.
#![allow(dead_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use face2mqtt::config::{ByteSize, Config};
use face2mqtt::door::command::request::{parse_payload, parse_topic, Gate};
use face2mqtt::door::command::Cmd;
use face2mqtt::integrations::terminal::lean;
use face2mqtt::integrations::terminal::model::{
    lenient_bool, lenient_f64, lenient_i64, lenient_string, Envelope, Page,
};
use face2mqtt::integrations::terminal::{DeviceInfo, User};
use face2mqtt::pipeline::ingest::{classify, Frame};
use face2mqtt::pipeline::record::{self, Source};
use face2mqtt::secret::Secret;
use face2mqtt::simulator::http::{form_fields, query_map};
use face2mqtt::simulator::state::State;
use serde_json::{Map, Value};

fn normalize(data: &Map<String, Value>, dropped: &[String]) {
    for source in [Source::Live, Source::Backfill] {
        if let Ok(mut rec) = record::normalize("t", data, source) {
            rec.mark_truncated(dropped);
            assert!(rec.sign_time() > 0 && rec.sign_time() <= record::MAX_SIGN_TIME);
            let text = rec.published();
            assert!(text.len() <= record::size::MAX_JSON);
            let back = record::Record::from_json(&text).expect("reads back");
            assert_eq!(back.event_id, rec.record.event_id);
            let _ = record::without_snapshot(&text);
            let _ = record::rfc3339(rec.sign_time());
            rec.drop_photo();
        }
    }
}

/// Any bytes as a record push frame: classification, the lean reader for oversized frames,
/// normalization into the published record.
pub fn frame(bytes: &[u8]) {
    // The first byte picks the path: the whole-frame classifier (as ingest uses it for frames
    // up to 1 MiB) or the lean reader with tiny limits (as for oversized frames, which
    // libFuzzer's inputs never reach by size).
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        match classify(rest) {
            Frame::Record(data) => normalize(&data, &[]),
            Frame::Reduced { data, dropped } => normalize(&data, &dropped),
            Frame::Other(_) | Frame::Invalid(_) | Frame::Lost(_) => {}
        }
        let _ = face2mqtt::pipeline::ingest::preview(rest);
    } else {
        let limits = lean::Limits {
            field: usize::from(mode / 2 % 32),
            photo: usize::from(mode / 2 % 64),
            key: 8,
            total: usize::from(mode) * 4,
        };
        if let Ok(l) = lean::parse(rest, limits) {
            if let Some(Ok(data)) = l.data {
                normalize(&data, &l.dropped);
            }
        }
    }
}

/// Any bytes as an MQTT request payload, then the safety gate with times from the input.
pub fn request(bytes: &[u8]) {
    let Some((&sel, rest)) = bytes.split_first() else {
        return;
    };
    let cmd = Cmd::ALL[usize::from(sel) % Cmd::ALL.len()];
    let wall = UNIX_EPOCH + Duration::from_secs(u64::from(sel) * 7_777_777);
    let mut gate = Gate::new(
        Duration::from_secs(u64::from(sel % 16)),
        Duration::from_millis(u64::from(sel) * 13),
        Cmd::ALL.into_iter().collect(),
    );
    if let Ok(p) = parse_payload(cmd, rest) {
        let now = Instant::now();
        for wall in [wall, SystemTime::now(), UNIX_EPOCH] {
            if let Err(r) = gate.admit(cmd, &p, sel % 3 == 0, now, wall) {
                let _ = r.text(cmd);
                let _ = r.reason();
            }
        }
    }
    if let Ok(topic) = std::str::from_utf8(rest) {
        let _ = parse_topic("face2mqtt", topic);
    }
}

fn walk(v: &Value) {
    let _ = (
        lenient_i64(v),
        lenient_f64(v),
        lenient_bool(v),
        lenient_string(v),
    );
    match v {
        Value::Array(items) => items.iter().for_each(walk),
        Value::Object(m) => m.values().for_each(walk),
        _ => {}
    }
}

/// Any bytes as an HTTP answer of the terminal (envelope, pages, users, device information),
/// or as the query and form of a request to the simulator's HTTP API.
pub fn http(bytes: &[u8]) {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(env) = Envelope::parse(rest) else {
            return;
        };
        walk(&Value::Object(env.body.clone()));
        if let Some(data) = env.into_data() {
            let _ = serde_json::from_value::<DeviceInfo>(data.clone());
            let _ = serde_json::from_value::<User>(data.clone());
            if let Ok(page) = Page::from_data(data.clone()) {
                for item in page.items {
                    if let Ok(u) = serde_json::from_value::<User>(item.clone()) {
                        let _ = serde_json::to_value(&u);
                    }
                    if let Value::Object(m) = item {
                        normalize(&m, &[]);
                    }
                }
            }
        }
    } else {
        // The simulator's HTTP API takes its query and form from the network too.
        let text = String::from_utf8_lossy(rest);
        let (query, body) = text.split_once('\n').unwrap_or((&text, ""));
        let q = query_map(Some(query));
        let state = State::new(Secret::new("123456"), u64::from(mode), 10);
        let _ = state.record_page(&q);
        let _ = state.user_page(&q);
        let _ = state.check_auth(&q, mode % 2 == 0);
        let ct = if mode % 4 == 1 {
            "application/x-www-form-urlencoded"
        } else {
            "multipart/form-data; boundary=XyZ"
        };
        let _ = form_fields(ct, body.as_bytes());
    }
}

/// Any bytes as the config file: parse, then validate.
pub fn config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = ByteSize::parse(text);
    let _ = face2mqtt::config::check_log_filter(text);
    if let Ok(config) = Config::parse(text) {
        let _ = config.validate();
    }
}
