// Over 450 lines: one payload per Home Assistant entity, and tests that hold each against HA's schema.
//! Home Assistant MQTT discovery payloads, built from the config alone (plus what the terminal
//! told us about itself): pure, so a test can hold every payload against HA's schema.
//!
//! One config topic per entity: `<prefix>/<component>/<node>/<object>/config`, where `<node>` is
//! the base topic made safe, so two bridges on one broker never touch each other's entities and
//! a sweep over `<prefix>/+/<node>/+/config` finds exactly ours.

use serde_json::{json, Map, Value};

use crate::config::{ButtonConfig, TerminalConfig};
use crate::messages::topics::{
    self, button as button_topic, diagnostics as diagnostics_topic, event as event_topic,
    ha_node_id as node_id, last_record as last_record_topic,
};
pub use crate::messages::DeviceDetails;

/// Everything discovery is made of.
pub struct Site<'a> {
    pub prefix: &'a str,
    pub base: &'a str,
    pub terminals: &'a [TerminalConfig],
    pub buttons: &'a [ButtonConfig],
}

/// One entity's config topic and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub topic: String,
    pub payload: Value,
}

/// The part of an entity id HA accepts: lowercase letters, digits and `_`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn origin() -> Value {
    json!({"name": "face2mqtt", "sw_version": env!("CARGO_PKG_VERSION")})
}

fn bridge_device(node: &str) -> Value {
    json!({
        "identifiers": [format!("{node}_bridge")],
        "name": "face2mqtt bridge",
        "manufacturer": "face2mqtt",
        "model": "MQTT bridge for face-recognition terminals",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

fn terminal_device(node: &str, t: &TerminalConfig, details: Option<&DeviceDetails>) -> Value {
    let mut d = Map::new();
    d.insert("identifiers".into(), json!([format!("{node}_{}", t.id)]));
    d.insert("name".into(), json!(t.display_name()));
    if let Some(m) = &t.manufacturer {
        d.insert("manufacturer".into(), json!(m));
    }
    let details = details.cloned().unwrap_or_default();
    d.insert(
        "model".into(),
        json!(details
            .model
            .unwrap_or_else(|| "Face recognition terminal".into())),
    );
    if let Some(v) = details.sw_version {
        d.insert("sw_version".into(), json!(v));
    }
    if let Some(v) = details.serial_number {
        d.insert("serial_number".into(), json!(v));
    }
    d.insert(
        "configuration_url".into(),
        json!(if t.http_port == 80 {
            format!("http://{}/", t.host)
        } else {
            format!("http://{}:{}/", t.host, t.http_port)
        }),
    );
    d.insert("via_device".into(), json!(format!("{node}_bridge")));
    Value::Object(d)
}

struct Builder<'a> {
    prefix: &'a str,
    node: String,
    out: Vec<Entity>,
}

impl Builder<'_> {
    /// `object` is unique within this bridge; `fields` are the platform's own keys.
    fn add(&mut self, component: &str, object: &str, device: &Value, avail: &Value, fields: Value) {
        let mut p = Map::new();
        p.insert("unique_id".into(), json!(format!("{}_{object}", self.node)));
        p.insert(
            "default_entity_id".into(),
            json!(format!("{component}.{}", slug(object))),
        );
        p.insert("device".into(), device.clone());
        p.insert("origin".into(), origin());
        p.insert("qos".into(), json!(1));
        for part in [avail.clone(), fields] {
            if let Value::Object(f) = part {
                p.extend(f);
            }
        }
        self.out.push(Entity {
            topic: format!("{}/{component}/{}/{object}/config", self.prefix, self.node),
            payload: Value::Object(p),
        });
    }
}

/// The availability of a terminal's entities: the bridge is up and the terminal's link is up.
fn terminal_availability(base: &str, t: &str) -> Value {
    json!({
        "availability": [
            {"topic": topics::bridge_state(base), "value_template": "{{ value_json.state }}"},
            {"topic": topics::availability(base, t)}
        ],
        "availability_mode": "all",
    })
}

fn bridge_availability(base: &str) -> Value {
    json!({
        "availability": [
            {"topic": topics::bridge_state(base), "value_template": "{{ value_json.state }}"}
        ],
    })
}

fn merge(a: Value, b: Value) -> Value {
    let (Value::Object(mut a), Value::Object(b)) = (a, b) else {
        return Value::Null;
    };
    a.extend(b);
    Value::Object(a)
}

/// The temperature template: the record's value in the unit the entity declares, whatever unit
/// the record came in (a terminal's unit can be changed on its screen).
fn temperature_template(fahrenheit: bool) -> String {
    let (same, convert) = if fahrenheit {
        ("F", "t.value * 9 / 5 + 32")
    } else {
        ("C", "(t.value - 32) * 5 / 9")
    };
    format!(
        "{{% set t = value_json.temperature %}}{{% if t and t.value is number %}}\
         {{{{ (t.value if t.unit == '{same}' else {convert}) | round(1) }}}}\
         {{% else %}}None{{% endif %}}"
    )
}

/// Every entity this bridge announces, with its payload.
pub fn entities(site: &Site<'_>, details: &dyn Fn(&str) -> Option<DeviceDetails>) -> Vec<Entity> {
    let base = site.base;
    let mut b = Builder {
        prefix: site.prefix,
        node: node_id(base),
        out: Vec::new(),
    };
    let bridge = bridge_device(&b.node);
    let diag = diagnostics_topic(base);
    let bridge_avail = bridge_availability(base);
    b.add(
        "sensor",
        "bridge_spool_records",
        &bridge,
        &bridge_avail,
        json!({
            "name": "Records queued",
            "state_topic": diag,
            "value_template": "{{ value_json.spool_records }}",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "icon": "mdi:tray-full",
        }),
    );
    b.add(
        "sensor",
        "bridge_oldest_queued_age",
        &bridge,
        &bridge_avail,
        json!({
            "name": "Oldest queued record age",
            "state_topic": diag,
            "value_template": "{{ value_json.oldest_queued_age_s }}",
            "device_class": "duration",
            "unit_of_measurement": "s",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }),
    );
    b.add(
        "sensor",
        "bridge_broker_reconnects",
        &bridge,
        &bridge_avail,
        json!({
            "name": "Broker reconnects",
            "state_topic": diag,
            "value_template": "{{ value_json.broker_reconnects }}",
            "state_class": "total_increasing",
            "entity_category": "diagnostic",
            "icon": "mdi:lan-disconnect",
        }),
    );
    b.add(
        "sensor",
        "bridge_broker_refusals",
        &bridge,
        &bridge_avail,
        json!({
            "name": "Broker refusals",
            "state_topic": diag,
            "value_template": "{{ value_json.broker_refusals }}",
            "state_class": "total_increasing",
            "entity_category": "diagnostic",
            "icon": "mdi:cancel",
        }),
    );
    for button in site.buttons {
        b.add(
            "event",
            &format!("bridge_button_{}", button.pin),
            &bridge,
            &bridge_avail,
            json!({
                "name": format!("Exit button GPIO{}", button.pin),
                "state_topic": button_topic(base, button.pin),
                "event_types": ["press", "long_press"],
                "device_class": "button",
            }),
        );
    }

    for t in site.terminals {
        let id = &t.id;
        let details = details(id);
        let fahrenheit = details.as_ref().is_some_and(|d| d.fahrenheit);
        let dev = terminal_device(&b.node, t, details.as_ref());
        let avail = terminal_availability(base, id);
        // State sensors read the retained latest record: after an HA restart they show the last
        // person at once instead of "unknown" until the next recognition.
        let record = last_record_topic(base, id);
        let request = |cmd: &str| topics::request(base, id, cmd);
        b.add(
            "event",
            &format!("{id}_recognition"),
            &dev,
            &avail,
            json!({
                "name": "Recognition",
                "state_topic": event_topic(base, id),
                "event_types": ["staff", "visitor", "blacklist", "stranger"],
                "icon": "mdi:face-recognition",
            }),
        );
        b.add(
            "image",
            &format!("{id}_last_capture"),
            &dev,
            &avail,
            json!({
                "name": "Last capture",
                "image_topic": format!("{base}/{id}/snapshot"),
                "content_type": "image/jpeg",
            }),
        );
        b.add(
            "sensor",
            &format!("{id}_last_person"),
            &dev,
            &avail,
                        json!({
                "name": "Last person",
                "state_topic": record,
                "value_template": "{{ value_json.person.name if value_json.person.name else value_json.person.type | capitalize }}",
                "json_attributes_topic": record,
                "icon": "mdi:account-check",
            }),
        );
        b.add(
            "sensor",
            &format!("{id}_temperature"),
            &dev,
            &avail,
            json!({
                "name": "Body temperature",
                "state_topic": record,
                "value_template": temperature_template(fahrenheit),
                "device_class": "temperature",
                "state_class": "measurement",
                "unit_of_measurement": if fahrenheit { "°F" } else { "°C" },
                "suggested_display_precision": 1,
            }),
        );
        b.add(
            "binary_sensor",
            &format!("{id}_mask"),
            &dev,
            &avail,
                        json!({
                "name": "Mask worn",
                "state_topic": record,
                "value_template": "{% if value_json.mask %}{{ 'ON' if value_json.mask.worn else 'OFF' }}{% else %}None{% endif %}",
                "icon": "mdi:face-mask",
            }),
        );
        let allowed = t.allowed_commands();
        let buttons = [
            (
                crate::messages::Cmd::Open,
                "open",
                "Open door",
                json!({"icon": "mdi:door-open"}),
            ),
            (
                crate::messages::Cmd::Reboot,
                "restart",
                "Restart",
                json!({"device_class": "restart", "entity_category": "config"}),
            ),
            (
                crate::messages::Cmd::SyncTime,
                "sync_time",
                "Sync time",
                json!({"entity_category": "config", "icon": "mdi:clock-check-outline"}),
            ),
        ];
        for (cmd, object, name, extra) in buttons {
            // A read-only terminal gets no buttons: they would only ever answer "not allowed".
            if !allowed.contains(&cmd) {
                continue;
            }
            b.add(
                "button",
                &format!("{id}_{object}"),
                &dev,
                &avail,
                merge(
                    extra,
                    json!({
                        "name": name,
                        "command_topic": request(cmd.as_str()),
                        "payload_press": "PRESS",
                        "retain": false,
                    }),
                ),
            );
        }
        // The door also as a lock (HA's lock card and actions), through the same gate.
        if allowed.contains(&crate::messages::Cmd::Open) {
            b.add(
                "lock",
                &format!("{id}_lock"),
                &dev,
                &avail,
                super::lock::fields(base, id),
            );
        }
        // Visitor passes valid now, on a terminal whose people commands can change them.
        if allowed.iter().any(|c| c.is_people()) {
            let visitors = topics::visitors(base, id);
            b.add(
                "sensor",
                &format!("{id}_visitors"),
                &dev,
                &avail,
                json!({
                    "name": "Visitor passes",
                    "state_topic": visitors,
                    "value_template": "{{ value_json.count }}",
                    "json_attributes_topic": visitors,
                    "state_class": "measurement",
                    "icon": "mdi:card-account-details-outline",
                }),
            );
        }
        // The terminal's clock against this machine's: a clock that jumped shows here first.
        let key = serde_json::to_string(id).unwrap_or_default();
        b.add(
            "sensor",
            &format!("{id}_clock_offset"),
            &dev,
            &bridge_avail,
            json!({
                "name": "Clock offset",
                "state_topic": diagnostics_topic(base),
                "value_template": format!("{{{{ value_json.terminal_clock_offset_s[{key}] }}}}"),
                "device_class": "duration",
                "unit_of_measurement": "s",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": "mdi:clock-alert-outline",
            }),
        );
        // The link sensor must read "off" when the link is down, not "unavailable".
        b.add(
            "binary_sensor",
            &format!("{id}_link"),
            &dev,
            &bridge_avail,
            json!({
                "name": "Link",
                "state_topic": topics::availability(base, id),
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            }),
        );
    }
    b.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn no_discovery_topic_is_longer_than_the_config_check_reckons() {
        for id in ["t", "front-door", &"x".repeat(300)] {
            let c = config("").terminals.into_iter().map(|mut t| {
                t.id = id.to_string();
                t
            });
            let terminals: Vec<_> = c.collect();
            let site = Site {
                prefix: "homeassistant",
                base: "site/doors",
                terminals: &terminals,
                buttons: &[],
            };
            let longest = entities(&site, &|_| None)
                .iter()
                .map(|e| e.topic.len())
                .max()
                .expect("entities");
            assert_eq!(
                longest,
                crate::messages::topics::longest_under_prefix("homeassistant", "site/doors", id),
                "terminal id of {} bytes",
                id.len()
            );
        }
    }

    #[test]
    fn each_terminal_has_a_clock_offset_sensor_reading_its_own_key() {
        let c = config("");
        let site = Site {
            prefix: "homeassistant",
            base: "site/doors",
            terminals: &c.terminals,
            buttons: &c.buttons,
        };
        let es = entities(&site, &|_| None);
        let e = es
            .iter()
            .find(|e| e.topic.contains("front-door_clock_offset"))
            .expect("a clock offset sensor");
        let v = &e.payload;
        assert_eq!(
            v["value_template"],
            "{{ value_json.terminal_clock_offset_s[\"front-door\"] }}"
        );
        assert_eq!(v["entity_category"], "diagnostic");
    }

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1\"\nbase_topic = \"site/doors\"\n\
             [[terminal]]\nid = \"front-door\"\nname = \"Front door\"\nhost = \"10.0.0.5\"\npassword = \"x\"\n{extra}"
        ))
        .expect("parses")
    }

    fn all(c: &Config) -> Vec<Entity> {
        entities(
            &Site {
                prefix: "homeassistant",
                base: &c.mqtt.base_topic,
                terminals: &c.terminals,
                buttons: &c.buttons,
            },
            &|_| None,
        )
    }

    #[test]
    fn the_node_id_is_the_base_topic_made_safe() {
        assert_eq!(node_id("site/doors"), "site_doors");
        assert_eq!(node_id("face2mqtt"), "face2mqtt");
    }

    #[test]
    fn entity_ids_use_default_entity_id_with_a_domain_and_no_object_id() {
        for e in all(&config("")) {
            let id = e.payload["default_entity_id"].as_str().expect("set");
            let component = e.topic.split('/').nth(1).expect("component");
            assert!(id.starts_with(&format!("{component}.")), "{id}");
            assert!(id.split_once('.').is_some_and(|(_, s)| s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
            assert!(e.payload.get("object_id").is_none());
        }
    }

    #[test]
    fn config_topics_sit_under_the_node_and_match_the_sweep_filter() {
        for e in all(&config("")) {
            let parts: Vec<&str> = e.topic.split('/').collect();
            assert_eq!(parts.len(), 5, "{}", e.topic);
            assert_eq!(parts[0], "homeassistant");
            assert_eq!(parts[2], "site_doors");
            assert_eq!(parts[4], "config");
        }
    }

    #[test]
    fn a_read_only_terminal_gets_no_buttons() {
        let c = config("commands = []\n");
        assert!(!all(&c).iter().any(|e| e.topic.contains("/button/")));
        let c = config("commands = [\"open\"]\n");
        let buttons: Vec<_> = all(&c)
            .into_iter()
            .filter(|e| e.topic.contains("/button/"))
            .collect();
        assert_eq!(buttons.len(), 1);
        assert_eq!(
            buttons[0].payload["command_topic"],
            "site/doors/front-door/request/open"
        );
    }

    fn one(es: &[Entity], suffix: &str) -> Option<Value> {
        es.iter()
            .find(|e| e.topic.ends_with(suffix))
            .map(|e| e.payload.clone())
    }

    #[test]
    fn a_terminal_that_may_open_has_a_lock_with_the_open_buttons_availability() {
        let es = all(&config(""));
        let lock = one(&es, "/lock/site_doors/front-door_lock/config").expect("a lock");
        let button = one(&es, "/button/site_doors/front-door_open/config").expect("a button");
        assert_eq!(lock["availability"], button["availability"]);
        assert_eq!(lock["availability_mode"], button["availability_mode"]);
        assert_eq!(lock["device"], button["device"]);
        assert_eq!(lock["default_entity_id"], "lock.front_door_lock");
        assert_eq!(lock["payload_open"], "OPEN");
        assert_eq!(lock["command_topic"], "site/doors/front-door/lock/set");
    }

    #[test]
    fn a_terminal_that_may_not_open_has_no_lock() {
        for commands in [
            "commands = []\n",
            "commands = [\"reboot\", \"sync_time\"]\n",
        ] {
            let es = all(&config(commands));
            assert!(!es.iter().any(|e| e.topic.contains("/lock/")), "{commands}");
        }
    }

    #[test]
    fn the_terminal_device_carries_what_the_terminal_reported() {
        let c = config("manufacturer = \"Acme\"\n");
        let es = entities(
            &Site {
                prefix: "homeassistant",
                base: "site/doors",
                terminals: &c.terminals,
                buttons: &[],
            },
            &|_| {
                Some(DeviceDetails {
                    model: Some("AATSS V2".into()),
                    sw_version: Some("V2.1.7".into()),
                    serial_number: Some("SN1".into()),
                    fahrenheit: true,
                })
            },
        );
        let e = es
            .iter()
            .find(|e| e.topic.ends_with("front-door_temperature/config"))
            .expect("temperature");
        let d = &e.payload["device"];
        assert_eq!(d["model"], "AATSS V2");
        assert_eq!(d["sw_version"], "V2.1.7");
        assert_eq!(d["serial_number"], "SN1");
        assert_eq!(d["manufacturer"], "Acme");
        assert_eq!(d["via_device"], "site_doors_bridge");
        assert_eq!(e.payload["unit_of_measurement"], "°F");
    }

    #[test]
    fn the_temperature_template_converts_to_the_declared_unit() {
        let c = temperature_template(false);
        assert!(c.contains("t.unit == 'C'"), "{c}");
        assert!(c.contains("(t.value - 32) * 5 / 9"), "{c}");
        let f = temperature_template(true);
        assert!(f.contains("t.unit == 'F'"), "{f}");
        assert!(f.contains("t.value * 9 / 5 + 32"), "{f}");
    }

    #[test]
    fn unique_ids_are_unique() {
        let c = config("[[button]]\npin = 17\nterminal = \"front-door\"\npress = \"open\"\n");
        let es = all(&c);
        let mut ids: Vec<_> = es
            .iter()
            .map(|e| e.payload["unique_id"].as_str().expect("set").to_string())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), es.len());
    }
}
