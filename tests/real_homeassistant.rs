//! Against a real Home Assistant Core: the bridge's discovery makes entities that HA accepts,
//! a recognition reaches HA's event entity with its fields, the capture is the picture HA serves,
//! HA's lock opens the door, the Visitor passes sensor counts, and
//! `examples/homeassistant/admit-stranger.yaml` notifies the phone of a stranger and, on the tap,
//! admits them. Judged on the broker (HA's automations answer there) and at
//! the simulated terminal, not in our own log.
//!
//! Runs when `FACE2MQTT_HA` names a `hass` executable; `scripts/ha-test` installs the versions
//! the README states and runs this against each. Without it the test says SKIPPED.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::PersonType;
use serde_json::{json, Value};

/// HA's first start on a slow machine compiles every module it imports (no bytecode cache).
const START: Duration = Duration::from_secs(240);
/// Anything after it is up: a discovery, an automation run, a lock call.
const STEP: Duration = Duration::from_secs(30);

/// Automations that report on MQTT what HA did: alive every 2 s once MQTT is connected, every
/// state change of the entity kinds the bridge makes, and a service call on request.
const AUTOMATIONS: &str = r#"
automation:
  - alias: alive
    trigger:
      - platform: time_pattern
        seconds: "/2"
    action:
      - service: mqtt.publish
        data:
          topic: ha-test/alive
          payload: "up"
  - alias: states
    mode: queued
    max: 1000
    trigger:
      - platform: event
        event_type: state_changed
    condition:
      - condition: template
        value_template: >-
          {{ trigger.event.data.entity_id.split('.')[0] in
             ['event', 'image', 'lock', 'sensor', 'binary_sensor', 'button']
             and trigger.event.data.new_state is not none }}
    action:
      - service: mqtt.publish
        data:
          topic: "ha-test/state/{{ trigger.event.data.entity_id }}"
          payload: >-
            {{ {'state': trigger.event.data.new_state.state,
                'attributes': trigger.event.data.new_state.attributes} | tojson }}
  - alias: call
    mode: queued
    trigger:
      - platform: mqtt
        topic: ha-test/call
    action:
      - service: "{{ trigger.payload_json.service }}"
        target:
          entity_id: "{{ trigger.payload_json.entity_id }}"
  - alias: tap
    mode: queued
    trigger:
      - platform: mqtt
        topic: ha-test/tap
    action:
      - event: mobile_app_notification_action
        event_data:
          action: "{{ trigger.payload_json.action }}"
          reply_text: "{{ trigger.payload_json.reply_text }}"
"#;

/// The phone of `examples/homeassistant/admit-stranger.yaml`: a notify service that writes to
/// `notify.log` in HA's config directory, so the test reads what the phone would show.
const PHONE: &str =
    "notify:\n  - platform: file\n    name: mobile_app_phone\n    filename: notify.log\n";

/// The example automation, as a package of HA's config.
const EXAMPLE: &str = include_str!("../examples/homeassistant/admit-stranger.yaml");

struct Hass {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Hass {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hass {
    /// HA with its MQTT integration set up for the broker on `broker` (a config entry written
    /// as the UI would), on a free loopback port of its own.
    fn start(hass: &Path, broker: u16) -> Hass {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "homeassistant:\n  name: face2mqtt test\n  latitude: 0\n  longitude: 0\n  elevation: 0\n  \
             unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: DE\n  \
             packages: !include_dir_named packages\n\
             http:\n  server_host: 127.0.0.1\n  server_port: {port}\n\
             logger:\n  default: warning\n{PHONE}{AUTOMATIONS}"
        );
        std::fs::write(dir.path().join("configuration.yaml"), config).expect("write config");
        let packages = dir.path().join("packages");
        std::fs::create_dir(&packages).expect("mkdir packages");
        std::fs::write(packages.join("admit_stranger.yaml"), EXAMPLE).expect("write example");
        let storage = dir.path().join(".storage");
        std::fs::create_dir(&storage).expect("mkdir .storage");
        let entries = json!({
            "version": 1, "minor_version": 1, "key": "core.config_entries",
            "data": {"entries": [{
                "entry_id": "0face2mqtt0000000000000000mqtt", "version": 1, "domain": "mqtt",
                "title": "127.0.0.1",
                "data": {"broker": "127.0.0.1", "port": broker, "discovery": true},
                "options": {}, "pref_disable_new_entities": false, "pref_disable_polling": false,
                "source": "user", "unique_id": null, "disabled_by": null
            }]}
        });
        std::fs::write(storage.join("core.config_entries"), entries.to_string())
            .expect("write config entry");
        let child = Command::new(hass)
            .arg("-c")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", hass.display()));
        Hass { child, dir, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("home-assistant.log")).unwrap_or_default()
    }

    /// What HA said of MQTT and of our entities at WARNING or above: a refused discovery
    /// payload, a deprecated key, an invalid value.
    fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(" ERROR ") || l.contains(" WARNING "))
            .filter(|l| {
                l.contains("components.mqtt")
                    || l.contains("face2mqtt")
                    || l.contains("front_door")
                    || l.contains("Invalid config")
            })
            .map(str::to_string)
            .collect()
    }

    /// What the phone of the example automation was sent.
    fn notifications(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("notify.log")).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// GET of a path of HA's web server: the body (plain or chunked).
    fn get(&self, path: &str) -> Vec<u8> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("HA listens");
        s.set_read_timeout(Some(STEP)).expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("request sent");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("answer read");
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers end");
        let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 200"),
            "GET {path}: {head}\nHome Assistant's log ends:\n{}",
            self.tail()
        );
        let body = raw[at + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            dechunk(&body)
        } else {
            body
        }
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..line_end])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

/// The next message on `sub` for which `want` holds, within `within`; HA's log in the failure.
async fn next_where(
    sub: &mut Subscriber,
    within: Duration,
    ha: &Hass,
    what: &str,
    mut want: impl FnMut(&str, &[u8]) -> bool,
) -> (String, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sub.rx.recv()).await {
            Ok(Some((topic, payload, _))) if want(&topic, &payload) => return (topic, payload),
            Ok(Some(_)) => {}
            Ok(None) => panic!("subscriber ended waiting for {what}"),
            Err(_) => panic!(
                "no {what} within {within:?}; Home Assistant's log ends:\n{}",
                ha.tail()
            ),
        }
    }
}

/// A state report of the automation: (entity id, state, attributes).
fn state_of(topic: &str, payload: &[u8]) -> Option<(String, String, Value)> {
    let entity = topic.strip_prefix("ha-test/state/")?;
    let v: Value = serde_json::from_slice(payload).ok()?;
    Some((
        entity.to_string(),
        v["state"].as_str().unwrap_or_default().to_string(),
        v["attributes"].clone(),
    ))
}

fn hass() -> Option<PathBuf> {
    std::env::var_os("FACE2MQTT_HA")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_shows_the_recognition_and_its_photo_its_lock_opens_and_the_example_admits_a_stranger(
) {
    let Some(hass) = hass() else {
        skipped(
            "home_assistant_shows_the_recognition_and_its_photo_its_lock_opens_and_the_example_admits_a_stranger",
            "no Home Assistant here: scripts/ha-test installs the tested versions and runs this",
        );
        return;
    };
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut setup = BridgeSetup::new(broker.port, &s.sim, PASSWORD);
    setup.extra_sections = "[commands]\nrequire_synchronized_clock = false\n";
    setup.extra_terminal_keys = "commands = [\"open\", \"admit\", \"block\"]\n";
    setup.log_level = "info";
    let mut sub = subscribe(broker.port, "ha-test/#").await;
    let mut answers = subscribe(broker.port, "face2mqtt/front-door/response/#").await;
    let mut snapshots = subscribe(broker.port, "face2mqtt/front-door/snapshot").await;
    let _bridge = Bridge::start(&setup);
    let ha = Hass::start(&hass, broker.port);

    next_where(
        &mut sub,
        START,
        &ha,
        "sign of life from HA's MQTT",
        |t, _| t == "ha-test/alive",
    )
    .await;

    // Discovery: the lock shows the terminal's state, so every entity HA took is there; the
    // Visitor passes sensor counts the terminal's valid visitor passes.
    let visitors_now = s.sim.users().iter().filter(|u| u.user_type == 2).count();
    let (mut lock, mut counted) = (None, false);
    let deadline = tokio::time::Instant::now() + STEP;
    while lock.is_none() || !counted {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (t, p) = next_where(
            &mut sub,
            left,
            &ha,
            "the lock, locked, and the visitor passes",
            |t, p| state_of(t, p).is_some(),
        )
        .await;
        let (entity, state, _) = state_of(&t, &p).expect("a state report");
        if entity.starts_with("lock.") && state == "locked" {
            lock = Some(entity);
        } else if entity.ends_with("_visitor_passes") && state == visitors_now.to_string() {
            counted = true;
        }
    }
    let lock = lock.expect("the lock");

    // A recognition: HA's event entity fires with the record's fields.
    let pushed = s.sim.push(Some(PersonType::Staff));
    let name = pushed["name"].as_str().expect("a staff name").to_string();
    let mut image = None;
    let mut fired = None;
    let deadline = tokio::time::Instant::now() + STEP;
    while image.is_none() || fired.is_none() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (t, p) = next_where(&mut sub, left, &ha, "the event and the image", |t, _| {
            t.starts_with("ha-test/state/event.") || t.starts_with("ha-test/state/image.")
        })
        .await;
        let (entity, _, attributes) = state_of(&t, &p).expect("a state report");
        if entity.starts_with("event.") && attributes["event_type"] == "staff" {
            fired = Some(attributes);
        } else if entity.starts_with("image.") && attributes["entity_picture"].is_string() {
            image = Some(attributes);
        }
    }
    let fired = fired.expect("fired");
    assert_eq!(fired["name"], json!(name), "{fired}");
    assert!(
        fired["event_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("front-door-")),
        "{fired}"
    );

    // The picture HA serves is the capture the bridge published.
    let (_, jpeg) = next_where(&mut snapshots, STEP, &ha, "the snapshot", |_, p| {
        p.starts_with(&[0xFF, 0xD8])
    })
    .await;
    let picture = image.expect("image")["entity_picture"]
        .as_str()
        .expect("a path")
        .to_string();
    assert_eq!(ha.get(&picture), jpeg, "HA serves the snapshot's bytes");

    // HA's lock opens the door, once, and shows it.
    assert!(s.sim.opens().is_empty());
    let call = json!({"service": "lock.unlock", "entity_id": lock}).to_string();
    publish(broker.port, "ha-test/call", call.as_bytes(), false).await;
    next_where(&mut sub, STEP, &ha, "the lock, unlocked", |t, p| {
        state_of(t, p).is_some_and(|(e, st, _)| e == lock && st == "unlocked")
    })
    .await;
    assert_eq!(s.sim.opens().len(), 1, "one open reached the terminal");
    // Locked again once the hold time is over: the next open may run.
    next_where(&mut sub, STEP, &ha, "the lock, locked again", |t, p| {
        state_of(t, p).is_some_and(|(e, st, _)| e == lock && st == "locked")
    })
    .await;

    // examples/homeassistant/admit-stranger.yaml: a stranger at the door, the phone notified,
    // the owner types a name and taps "until Friday"; the terminal then knows that face.
    let stranger = s.sim.push(Some(PersonType::Stranger));
    let face = s.sim.newest_capture().expect("a stranger's capture");
    let event_id = event_id_of(&stranger);
    let deadline = tokio::time::Instant::now() + STEP;
    while !ha.notifications().contains("Someone is at the front door") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the phone was not notified; Home Assistant's log ends:\n{}",
            ha.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tap = json!({"action": format!("FACE2MQTT_ADMIT_FRIDAY_{event_id}"), "reply_text": "Ann Example"});
    publish(
        broker.port,
        "ha-test/tap",
        tap.to_string().as_bytes(),
        false,
    )
    .await;
    let (_, answer) = next_where(&mut answers, STEP, &ha, "the answer to admit", |t, _| {
        t.ends_with("/response/admit")
    })
    .await;
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(s.sim.opens().len(), 2, "the tap opened the door once");
    let visitor = s
        .sim
        .users()
        .into_iter()
        .find(|u| u.name == "Ann Example")
        .expect("enrolled as the name typed");
    assert_eq!(visitor.user_type, 2);
    let end = visitor.extra["endTime"].as_u64().expect("endTime");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    assert!(
        end > now && end <= now + 7 * 86_400,
        "until Friday 18:00: {end}"
    );
    assert_eq!(
        end % 86_400,
        18 * 3600,
        "18:00 in HA's time zone (UTC here)"
    );
    let back = s.sim.push_face(face);
    assert_eq!(
        back["name"], "Ann Example",
        "the same face is the visitor now"
    );

    let complaints = ha.complaints();
    assert!(
        complaints.is_empty(),
        "Home Assistant complained:\n{}",
        complaints.join("\n")
    );
}
