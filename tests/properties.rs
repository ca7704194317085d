//! Property tests: whatever arrives from the terminal, MQTT or the network, the pure input paths
//! answer with a value or an error, never a panic; and what they accept is what they promise.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use face2mqtt::door::command::request::{parse_payload, Gate};
use face2mqtt::door::command::Cmd;
use face2mqtt::integrations::terminal::lean;
use face2mqtt::integrations::terminal::model::{Envelope, Page};
use face2mqtt::integrations::terminal::{DeviceInfo, User};
use face2mqtt::pipeline::ingest::{classify, Frame};
use face2mqtt::pipeline::record::{self, Source};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Numbers as the firmware, a careless integrator or an attacker might send them.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(1e30)),
        Just(json!(-1e30)),
        Just(json!(300_000_000_000_000u64)),
        Just(json!(253_402_300_800u64)),
        Just(json!(1_600_972_860)),
        Just(json!(0)),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        Just("null".to_string()),
        Just("253402300800000".to_string()),
        Just("1e30".to_string()),
        Just("/9j/4AAQSkZJRg==".to_string()),
        Just("data:image/jpeg;base64,/9j/".to_string()),
        "[0-9]{1,25}(\\.[0-9]{1,5})?",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A record object: the fields the terminal sends, each with any value, plus strangers.
fn record_fields() -> impl Strategy<Value = Map<String, Value>> {
    const FIELDS: &[&str] = &[
        "id",
        "signTime",
        "type",
        "userType",
        "userId",
        "name",
        "jobNumber",
        "department",
        "icNumber",
        "inputType",
        "similarity",
        "temperature",
        "temperatureState",
        "Temperatureunit",
        "wearMask",
        "wearMaskAlarm",
        "signAvatar",
        "photo",
        "gender",
    ];
    vec(
        (
            prop_oneof![
                proptest::sample::select(FIELDS).prop_map(str::to_string),
                "[a-zA-Z]{1,8}"
            ],
            json_value(),
        ),
        0..12,
    )
    .prop_map(|pairs| pairs.into_iter().collect())
}

/// The `data` of a frame as serde_json reads it.
fn reparsed(frame: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(frame) {
        Ok(Value::Object(mut m)) => match m.remove("data") {
            Some(Value::Object(d)) => d,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

fn frame_to_record(bytes: &[u8]) {
    let (data, dropped) = match classify(bytes) {
        Frame::Record(data) => (data, Vec::new()),
        Frame::Reduced { data, dropped } => (data, dropped),
        Frame::Other(_) | Frame::Invalid(_) | Frame::Lost(_) => return,
    };
    if let Ok(mut rec) = record::normalize("t", &data, Source::Live) {
        rec.mark_truncated(&dropped);
        assert!(rec.sign_time() > 0 && rec.sign_time() <= record::MAX_SIGN_TIME);
        assert_eq!(rec.json()["snapshot"], json!(rec.photo.is_some()));
        let _ = record::rfc3339(rec.sign_time());
        assert!(rec.published().len() <= record::size::MAX_JSON);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_into_the_frame_to_record_path_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        frame_to_record(&bytes);
    }

    #[test]
    fn any_record_fields_normalize_or_are_refused_and_the_time_is_always_in_range(
        data in record_fields(),
    ) {
        let frame = json!({"code": 30000, "data": Value::Object(data.clone())}).to_string();
        // Compared with the frame as JSON reads it (a float may not survive text exactly).
        let sent = reparsed(&frame);
        prop_assert_eq!(classify(frame.as_bytes()), Frame::Record(sent));
        frame_to_record(frame.as_bytes());
        if let Ok(rec) = record::normalize("t", &data, Source::Backfill) {
            let time = rec.json()["time"].as_str().unwrap_or_default().to_string();
            prop_assert!(time.len() == 20 && time.ends_with('Z'), "{}", time);
        }
    }

    #[test]
    fn the_lean_reader_keeps_exactly_what_fits_and_never_panics(
        data in record_fields(),
        field in 0usize..64,
        total in 0usize..2048,
    ) {
        let frame = json!({"code": 30000, "message": "push", "data": Value::Object(data.clone())})
            .to_string();
        let generous = lean::Limits { field: 1 << 20, photo: 1 << 20, key: 1 << 10, total: 1 << 24 };
        let whole = lean::parse(frame.as_bytes(), generous).expect("valid JSON reads");
        let data = reparsed(&frame);
        let mut without_user_photo = data.clone();
        without_user_photo.remove("photo");
        prop_assert_eq!(whole.data, Some(Ok(without_user_photo)));
        prop_assert!(whole.dropped.is_empty());
        let tight = lean::Limits { field, photo: field * 2, key: 8, total };
        let l = lean::parse(frame.as_bytes(), tight).expect("valid JSON reads");
        if let Some(Ok(kept)) = l.data {
            for (k, v) in &kept {
                prop_assert_eq!(data.get(k), Some(v));
            }
            prop_assert!(kept.len() + l.dropped.len() <= data.len());
        }
    }

    #[test]
    fn the_lean_reader_never_panics_on_any_bytes(bytes in vec(any::<u8>(), 0..512), total in 0usize..512) {
        let _ = lean::parse(&bytes, lean::Limits { field: 8, photo: 16, key: 4, total });
    }

    #[test]
    fn any_request_payload_is_refused_unless_it_is_one_of_the_documented_shapes(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..64),
            json_value().prop_map(|v| v.to_string().into_bytes()),
            btree_map(
                proptest::sample::select(&["remark", "transaction", "time", "tiem"][..]),
                json_value(),
                0..4,
            )
            .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default()),
        ],
        cmd in proptest::sample::select(&Cmd::ALL[..]),
    ) {
        let Ok(p) = parse_payload(cmd, &bytes) else {
            return Ok(());
        };
        let text = std::str::from_utf8(&bytes).expect("accepted requests are text").trim();
        let plain = text.is_empty()
            || text.eq_ignore_ascii_case("press")
            || text.eq_ignore_ascii_case(cmd.as_str());
        let object = matches!(
            serde_json::from_str::<Value>(text),
            Ok(Value::Object(m)) if m.keys().all(|k| ["remark", "transaction", "time"].contains(&k.as_str()))
        );
        prop_assert!(plain || object, "acted on {:?}", text);
        if plain {
            prop_assert_eq!(p, Default::default());
        }
    }

    #[test]
    fn the_gate_decides_on_any_request_time_without_panicking(
        secs in any::<u64>(),
        wall_secs in 0u64..(1 << 40),
        max_age in 0u64..(1 << 30),
        retained in any::<bool>(),
    ) {
        let t = format!(r#"{{"time":{secs}}}"#);
        let mut gate = Gate::new(
            Duration::from_secs(max_age),
            Duration::from_secs(3),
            Cmd::ALL.into_iter().collect(),
        );
        if let Ok(p) = parse_payload(Cmd::Open, t.as_bytes()) {
            let wall = UNIX_EPOCH + Duration::from_secs(wall_secs);
            if let Err(r) = gate.admit(Cmd::Open, &p, retained, Instant::now(), wall) {
                prop_assert!(!r.text(Cmd::Open).is_empty());
            }
            let _ = gate.admit(Cmd::Open, &p, retained, Instant::now(), SystemTime::now());
        }
    }

    #[test]
    fn any_http_answer_parses_or_is_refused_never_panics(
        body in prop_oneof![
            vec(any::<u8>(), 0..256),
            json_value().prop_map(|v| json!({"code": 200, "data": v}).to_string().into_bytes()),
            vec(json_value(), 0..4).prop_map(|items| json!({
                "code": 200,
                "data": {"total": items.len(), "pageNum": 1e30, "totalPage": -5, "data": items},
            }).to_string().into_bytes()),
        ],
    ) {
        let Ok(env) = Envelope::parse(&body) else {
            return Ok(());
        };
        if let Some(data) = env.into_data() {
            let _ = serde_json::from_value::<DeviceInfo>(data.clone());
            let _ = serde_json::from_value::<User>(data.clone());
            if let Ok(page) = Page::from_data(data.clone()) {
                for item in page.items {
                    let _ = serde_json::from_value::<User>(item.clone());
                    if let Value::Object(m) = item {
                        let _ = record::normalize("t", &m, Source::Backfill);
                    }
                }
            }
        }
    }
}
