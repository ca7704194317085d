//! The door as a Home Assistant MQTT lock, beside the "Open door" button: HA's lock card and
//! `lock.open` / `lock.unlock` actions, and a state that shows when the door was opened.
//!
//! The payload words come from the types the command router reads and writes
//! ([`LockCommand`], [`LockState`]), so the entity can only name what the bridge understands.

use serde_json::{json, Value};

use crate::messages::{topics, LockCommand, LockState};

/// The lock platform's own keys (HA's `lock.mqtt` schema). `payload_open` is what makes HA offer
/// "open": without it a lock supports only lock and unlock. `retain` is false: a retained command
/// would be refused anyway (it would replay on every reconnect).
pub fn fields(base: &str, terminal: &str) -> Value {
    json!({
        "name": "Door",
        "command_topic": topics::lock_command(base, terminal),
        "state_topic": topics::lock_state(base, terminal),
        "payload_lock": LockCommand::Lock.payload(),
        "payload_unlock": LockCommand::Unlock.payload(),
        "payload_open": LockCommand::Open.payload(),
        "state_locked": LockState::Locked.as_str(),
        "state_unlocked": LockState::Unlocked.as_str(),
        "state_open": LockState::Open.as_str(),
        "retain": false,
        "icon": "mdi:door",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_offers_open_and_names_the_bridges_topics_and_words() {
        let f = fields("site/doors", "front-door");
        assert_eq!(f["command_topic"], "site/doors/front-door/lock/set");
        assert_eq!(f["state_topic"], "site/doors/front-door/lock/state");
        assert_eq!(f["payload_open"], "OPEN");
        assert_eq!(f["payload_unlock"], "UNLOCK");
        assert_eq!(f["payload_lock"], "LOCK");
        assert_eq!(f["state_locked"], "locked");
        assert_eq!(f["state_unlocked"], "unlocked");
        assert_eq!(f["state_open"], "open");
        assert_eq!(f["retain"], false);
    }

    #[test]
    fn the_lock_never_claims_states_the_bridge_does_not_publish() {
        let f = fields("f", "t");
        for key in [
            "state_opening",
            "state_locking",
            "state_unlocking",
            "state_jammed",
        ] {
            assert!(f.get(key).is_none(), "{key}");
        }
        assert!(
            f.get("optimistic").is_none(),
            "the state topic is the truth"
        );
    }
}
