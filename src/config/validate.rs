//! Validation: values that parse but make no sense, each problem naming its key.

use super::*;

impl Config {
    /// Values that parse but cannot work. Each problem starts with the key it is about.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !valid_topic_base(&self.mqtt.base_topic) {
            p.push(format!(
                "mqtt.base_topic: `{}` must be a topic without wildcards or leading/trailing `/`",
                self.mqtt.base_topic
            ));
        }
        p.extend(reserved_topic_problem(
            "mqtt.base_topic",
            &self.mqtt.base_topic,
        ));
        if self.mqtt.password.is_some() && self.mqtt.password_file.is_some() {
            p.push("mqtt.password_file: give either password or password_file, not both".into());
        }
        if (self.mqtt.password.is_some() || self.mqtt.password_file.is_some())
            && self.mqtt.username.is_none()
        {
            p.push("mqtt.username: a password needs a username".into());
        }
        p.extend(self.mqtt.tls_problems());
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_min > self.mqtt.reconnect_max {
            p.push("mqtt.reconnect_min: must be above zero and at most reconnect_max".into());
        }
        if self.mqtt.keep_alive < Duration::from_secs(1) {
            p.push("mqtt.keep_alive: must be at least 1s".into());
        }
        if !valid_topic_base(&self.home_assistant.discovery_prefix) {
            p.push(format!(
                "home_assistant.discovery_prefix: `{}` is not a valid topic prefix",
                self.home_assistant.discovery_prefix
            ));
        }
        p.extend(reserved_topic_problem(
            "home_assistant.discovery_prefix",
            &self.home_assistant.discovery_prefix,
        ));
        p.extend(self.topic_length_problems());
        if self.commands.max_age < Duration::from_secs(1) {
            p.push("commands.max_age: must be at least 1s".into());
        }
        let people = &self.people;
        if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600))
            .contains(&people.admit_window)
        {
            p.push(
                "people.admit_window: must be between 1m and 24h (these are photos of people)"
                    .into(),
            );
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(366 * 24 * 3600))
            .contains(&people.max_pass)
        {
            p.push("people.max_pass: must be between 1m and 366d".into());
        }
        if !people.refresh.is_zero() && people.refresh < Duration::from_secs(60) {
            p.push(
                "people.refresh: use \"0s\" to read only after changes, or at least \"1m\"".into(),
            );
        }
        if self.spool.dir.as_os_str().is_empty() {
            p.push(
                "spool.dir: must not be empty (it would put the spool in the working directory)"
                    .into(),
            );
        }
        if let Err(e) = check_log_filter(&self.log.level) {
            p.push(format!("log.level: {e}"));
        }
        for (key, d) in self.durations() {
            if d > MAX_DURATION {
                p.push(format!(
                    "{key}: {} is longer than the {} any duration may be",
                    humantime::format_duration(d),
                    humantime::format_duration(MAX_DURATION)
                ));
            }
        }
        // MQTT carries the keep-alive in 16 bits of seconds.
        if self.mqtt.keep_alive > Duration::from_secs(u64::from(u16::MAX)) {
            p.push("mqtt.keep_alive: must be at most 65535s (MQTT's limit)".into());
        }
        if self.spool.max_size.0 < (1 << 20) {
            p.push(format!(
                "spool.max_size: {} is too small; give at least 1MiB",
                self.spool.max_size
            ));
        }
        // Below one photo record (~60 KB) every record would wait for the one before; above a
        // gigabyte it bounds nothing a Pi has.
        if !(256 << 10..=1 << 30).contains(&self.spool.memory.0) {
            p.push(format!(
                "spool.memory: {} is out of range; give 256KiB to 1GiB (default 2MiB)",
                self.spool.memory
            ));
        }
        if self.terminals.is_empty() {
            p.push("terminal: no [[terminal]] configured".into());
        }
        let mut ids = BTreeSet::new();
        for (i, t) in self.terminals.iter().enumerate() {
            let key = |k: &str| format!("terminal[{i}] ({}).{k}", t.id);
            if !valid_id(&t.id) {
                p.push(format!(
                    "terminal[{i}].id: `{}` must match [a-z0-9_-]+ (it is used in MQTT topics)",
                    t.id
                ));
            }
            if t.id == "bridge" {
                p.push(format!(
                    "terminal[{i}].id: `bridge` is taken by the bridge's own topics (<base>/bridge/...)"
                ));
            }
            if !ids.insert(t.id.as_str()) {
                p.push(format!(
                    "{}: `{}` is used by more than one terminal",
                    key("id"),
                    t.id
                ));
            }
            if let Some(e) = host_problem(&t.host) {
                p.push(format!("{}: {e}", key("host")));
            }
            match (&t.password, &t.password_file) {
                (None, None) => p.push(format!(
                    "{}: give password or password_file",
                    key("password")
                )),
                (Some(_), Some(_)) => p.push(format!(
                    "{}: give either password or password_file, not both",
                    key("password_file")
                )),
                _ => {}
            }
            if t.http_port == 0 || t.ws_port == 0 {
                p.push(format!("{}: ports must be 1-65535", key("http_port")));
            }
            if t.request_timeout < Duration::from_millis(100) {
                p.push(format!(
                    "{}: must be at least 100ms",
                    key("request_timeout")
                ));
            }
            if t.ping_interval.is_zero() || t.dead_after <= t.ping_interval {
                p.push(format!(
                    "{}: must be longer than ping_interval (and both above zero)",
                    key("dead_after")
                ));
            }
            if t.reconnect_min.is_zero() || t.reconnect_min > t.reconnect_max {
                p.push(format!(
                    "{}: must be above zero and at most reconnect_max",
                    key("reconnect_min")
                ));
            }
            if !t.time_sync_interval.is_zero() && t.time_sync_interval < Duration::from_secs(60) {
                p.push(format!(
                    "{}: use \"0s\" to disable or at least \"1m\"",
                    key("time_sync_interval")
                ));
            }
        }
        p.extend(duplicate_endpoints(&self.terminals));
        if self.home_assistant.max_event_age < Duration::from_secs(1) {
            p.push("home_assistant.max_event_age: must be at least 1s".into());
        }
        if self.mqtt.diagnostics_interval < Duration::from_secs(1) {
            p.push("mqtt.diagnostics_interval: must be at least 1s".into());
        }
        let not_a_pin = |key: &str, pin: u8| {
            (pin > 27).then(|| {
                format!("{key}: {pin} is not a BCM GPIO pin of a Raspberry Pi header (0-27)")
            })
        };
        let mut pins = BTreeSet::new();
        if let Some(led) = &self.status_led {
            p.extend(not_a_pin("status_led.pin", led.pin));
            pins.insert(led.pin);
        }
        for (i, b) in self.buttons.iter().enumerate() {
            p.extend(not_a_pin(&format!("button[{i}].pin"), b.pin));
            if !pins.insert(b.pin) {
                p.push(format!(
                    "button[{i}].pin: pin {} is used by more than one button (or the status LED)",
                    b.pin
                ));
            }
            if !self.terminals.iter().any(|t| t.id == b.terminal) {
                p.push(format!(
                    "button[{i}].terminal: no terminal has id `{}`",
                    b.terminal
                ));
            }
            if b.debounce > Duration::from_secs(1) {
                p.push(format!(
                    "button[{i}].debounce: {:?} is longer than a press; give at most 1s",
                    b.debounce
                ));
            }
            if b.long_press_after <= b.debounce {
                p.push(format!(
                    "button[{i}].long_press_after: must be longer than debounce"
                ));
            }
        }
        p
    }

    /// Topics over MQTT's length limit cannot even be encoded: the bridge would start and never
    /// connect. The longest terminal id decides (every terminal gets the same suffixes).
    pub(super) fn topic_length_problems(&self) -> Vec<String> {
        let base = &self.mqtt.base_topic;
        let prefix = &self.home_assistant.discovery_prefix;
        let longest = self
            .terminals
            .iter()
            .enumerate()
            .max_by_key(|(_, t)| t.id.len());
        let id = longest.map_or("", |(_, t)| t.id.as_str());
        let id_part =
            longest.map(|(i, t)| (format!("terminal[{i}] ({}).id", shown(&t.id)), t.id.len()));
        let base_part = ("mqtt.base_topic".to_string(), base.len());
        let mut p = Vec::new();
        let parts: Vec<_> = std::iter::once(base_part.clone())
            .chain(id_part.clone())
            .collect();
        p.extend(topic_too_long(topics::longest_under_base(base, id), &parts));
        if self.home_assistant.enabled {
            let parts: Vec<_> = [
                ("home_assistant.discovery_prefix".to_string(), prefix.len()),
                base_part,
            ]
            .into_iter()
            .chain(id_part)
            .collect();
            let built = topics::longest_under_prefix(prefix, base, id);
            p.extend(topic_too_long(built, &parts));
        }
        p
    }

    /// Every duration in the config, with its key, for the checks that hold for all of them.
    pub(super) fn durations(&self) -> Vec<(String, Duration)> {
        let (m, ha, people) = (&self.mqtt, &self.home_assistant, &self.people);
        let mut out: Vec<(String, Duration)> = [
            ("mqtt.keep_alive", m.keep_alive),
            ("mqtt.reconnect_min", m.reconnect_min),
            ("mqtt.reconnect_max", m.reconnect_max),
            ("mqtt.diagnostics_interval", m.diagnostics_interval),
            ("home_assistant.max_event_age", ha.max_event_age),
            ("commands.max_age", self.commands.max_age),
            ("commands.open_hold", self.commands.open_hold),
            ("people.admit_window", people.admit_window),
            ("people.max_pass", people.max_pass),
            ("people.refresh", people.refresh),
        ]
        .map(|(k, d)| (k.to_string(), d))
        .into();
        for (i, t) in self.terminals.iter().enumerate() {
            for (k, d) in [
                ("time_sync_interval", t.time_sync_interval),
                ("request_timeout", t.request_timeout),
                ("ping_interval", t.ping_interval),
                ("dead_after", t.dead_after),
                ("reconnect_min", t.reconnect_min),
                ("reconnect_max", t.reconnect_max),
                ("backfill_margin", t.backfill_margin),
                ("backfill_first", t.backfill_first),
            ] {
                out.push((format!("terminal[{i}] ({}).{k}", t.id), d));
            }
        }
        for (i, b) in self.buttons.iter().enumerate() {
            out.push((format!("button[{i}].debounce"), b.debounce));
            out.push((format!("button[{i}].long_press_after"), b.long_press_after));
        }
        out
    }
}
