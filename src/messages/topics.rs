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

pub fn diagnostics(base: &str) -> String {
    format!("{base}/bridge/diagnostics")
}

pub fn button(base: &str, pin: u8) -> String {
    format!("{base}/bridge/button/{pin}")
}

pub fn response(base: &str, terminal: &str, cmd: &str) -> String {
    format!("{base}/{terminal}/response/{cmd}")
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
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The filter that finds every discovery config topic of this bridge.
pub fn ha_sweep_filter(prefix: &str, base: &str) -> String {
    format!("{prefix}/+/{}/+/config", ha_node_id(base))
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
    fn the_discovery_prefix_matches_whole_levels_only() {
        assert!(under_prefix("homeassistant", "homeassistant/status"));
        assert!(!under_prefix("homeassistant", "homeassistantx/status"));
    }
}
