//! Every topic the bridge publishes or subscribes to, built in one place (the README's topic
//! table is the contract). `base` is `mqtt.base_topic`, `prefix` Home Assistant's discovery prefix.

pub fn bridge_state(base: &str) -> String {
    format!("{base}/bridge/state")
}

pub fn availability(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/availability")
}

pub fn record(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/record")
}

pub fn snapshot(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/snapshot")
}

pub fn last_record(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/last_record")
}

pub fn event(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/event")
}

/// The visitor passes valid now, retained (`door/command/passes.rs`).
pub fn visitors(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/visitors")
}

pub fn diagnostics(base: &str) -> String {
    format!("{base}/bridge/diagnostics")
}

pub fn button(base: &str, pin: u8) -> String {
    format!("{base}/bridge/button/{pin}")
}

pub fn response(base: &str, terminal: &str, cmd: &str) -> String {
    format!("{base}/{terminal}/response/{cmd}")
}

/// The one response level for every command name the bridge does not know: answering on
/// `response/<name>` would let any client make the bridge publish to as many topics as it likes.
pub const UNKNOWN_COMMAND: &str = "unknown";

pub fn response_unknown(base: &str, terminal: &str) -> String {
    response(base, terminal, UNKNOWN_COMMAND)
}

pub fn request(base: &str, terminal: &str, cmd: &str) -> String {
    format!("{base}/{terminal}/request/{cmd}")
}

/// Home Assistant's lock entity sends `LOCK`, `UNLOCK`, `OPEN` here.
pub fn lock_command(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/lock/set")
}

/// What the lock shows (`locked`, `open`, `unlocked`), retained.
pub fn lock_state(base: &str, terminal: &str) -> String {
    format!("{base}/{terminal}/lock/state")
}

/// Every terminal's lock commands.
pub fn lock_command_filter(base: &str) -> String {
    format!("{base}/+/lock/set")
}

/// Every terminal's requests.
pub fn request_filter(base: &str) -> String {
    format!("{base}/+/request/+")
}

/// Home Assistant announces `online` here when it (re)starts.
pub fn ha_status(prefix: &str) -> String {
    format!("{prefix}/status")
}

/// The discovery node id: the base topic with everything HA does not allow replaced.
pub fn ha_node_id(base: &str) -> String {
    base.replace(
        |c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "_",
    )
}

/// The filter that finds every discovery config topic of this bridge.
pub fn ha_sweep_filter(prefix: &str, base: &str) -> String {
    format!("{prefix}/+/{}/+/config", ha_node_id(base))
}

/// One discovery entity's config topic; `node` is [`ha_node_id`] of the base topic.
pub fn ha_config(prefix: &str, component: &str, node: &str, object: &str) -> String {
    format!("{prefix}/{component}/{node}/{object}/config")
}

/// MQTT's limit on a topic: a UTF-8 string with a 16-bit length prefix (MQTT 3.1.1 §1.5.3). A
/// longer one cannot be encoded at all, so the client never gets as far as the broker.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// The discovery entities whose `<component>/<object>` is longest: per terminal the object is
/// `<t>` plus the suffix, for the bridge it is fixed. `tests/properties.rs` holds these against
/// every topic `homeassistant::discovery` builds, so a longer entity added there fails a test
/// (`discovery`'s tests).
const HA_LONGEST_TERMINAL_ENTITY: (&str, &str) = ("sensor", "_clock_offset");
const HA_LONGEST_BRIDGE_ENTITY: (&str, &str) = ("sensor", "bridge_oldest_queued_age");

/// The longest topic, in bytes, the bridge builds under `base` for `terminal` (publishes,
/// subscriptions, answers; a GPIO pin has at most two digits).
pub fn longest_under_base(base: &str, terminal: &str) -> usize {
    let per_command = super::Cmd::ALL.iter().flat_map(|c| {
        [
            request(base, terminal, c.as_str()),
            response(base, terminal, c.as_str()),
        ]
    });
    [
        bridge_state(base),
        diagnostics(base),
        button(base, 99),
        availability(base, terminal),
        record(base, terminal),
        snapshot(base, terminal),
        last_record(base, terminal),
        event(base, terminal),
        lock_command(base, terminal),
        lock_state(base, terminal),
        visitors(base, terminal),
        response_unknown(base, terminal),
    ]
    .into_iter()
    .chain(per_command)
    .map(|t| t.len())
    .max()
    .unwrap_or(0)
}

/// The longest Home Assistant topic, in bytes, the bridge builds for `terminal` under `prefix`
/// (discovery configs, HA's status, the sweep over our configs).
pub fn longest_under_prefix(prefix: &str, base: &str, terminal: &str) -> usize {
    let node = ha_node_id(base);
    let (component, suffix) = HA_LONGEST_TERMINAL_ENTITY;
    let (bridge_component, bridge_object) = HA_LONGEST_BRIDGE_ENTITY;
    [
        ha_config(prefix, component, &node, &format!("{terminal}{suffix}")),
        ha_config(prefix, bridge_component, &node, bridge_object),
        ha_status(prefix),
        ha_sweep_filter(prefix, base),
    ]
    .iter()
    .map(String::len)
    .max()
    .unwrap_or(0)
}

/// Whether `topic` lies under the discovery prefix.
pub fn under_prefix(prefix: &str, topic: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_keeps_only_what_home_assistant_allows() {
        assert_eq!(ha_node_id("site/face2mqtt 1"), "site_face2mqtt_1");
    }

    #[test]
    fn an_unknown_command_is_answered_on_one_fixed_topic() {
        assert_eq!(response_unknown("f2m", "door"), "f2m/door/response/unknown");
    }

    #[test]
    fn the_longest_topic_under_the_base_is_a_terminal_s_sync_time_response() {
        assert_eq!(
            longest_under_base("f2m", "door"),
            "f2m/door/response/sync_time".len()
        );
    }

    #[test]
    fn the_longest_discovery_topic_grows_with_the_terminal_id_past_the_bridge_s_own() {
        let bridge = "homeassistant/sensor/f2m/bridge_oldest_queued_age/config".len();
        assert_eq!(longest_under_prefix("homeassistant", "f2m", "t"), bridge);
        let id = "a-very-long-terminal-id";
        assert_eq!(
            longest_under_prefix("homeassistant", "f2m", id),
            format!("homeassistant/sensor/f2m/{id}_clock_offset/config").len()
        );
    }

    #[test]
    fn the_node_in_a_discovery_topic_is_never_longer_in_bytes_than_the_base() {
        // Each character becomes one ASCII byte: a base of multi-byte characters shrinks.
        assert!(ha_node_id("ü/ö").len() <= "ü/ö".len());
    }

    #[test]
    fn the_discovery_prefix_matches_whole_levels_only() {
        assert!(under_prefix("homeassistant", "homeassistant/status"));
        assert!(!under_prefix("homeassistant", "homeassistantx/status"));
    }
}
