//! Where a message on a subscribed topic goes: command requests and lock commands to the command
//! router, Home Assistant's status and retained discovery replays to the Home Assistant task.
//!
//! Neither consumer may hold up the connection, so messages are handed over with `try_send`;
//! one that finds its consumer behind is dropped with a warning (a request dropped here is one
//! the router could not have answered in time anyway).

use std::time::Instant;

use tokio::sync::mpsc;

use crate::messages::{topics, HaMsg, Incoming, RouterMsg};

/// Home Assistant's side of the inbox.
pub struct HaInbox {
    pub prefix: String,
    /// Subscribed after every CONNACK (HA's status, the sweep over our discovery configs).
    pub filters: Vec<String>,
    pub tx: mpsc::Sender<HaMsg>,
}

/// The consumers of subscribed topics.
pub struct Inbox {
    /// Subscribed after every CONNACK when there is a command router (requests, lock commands).
    pub command_filters: Vec<String>,
    pub commands: Option<mpsc::Sender<RouterMsg>>,
    pub ha: Option<HaInbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Commands,
    HomeAssistant,
    Nowhere,
}

/// Pure: which consumer a message is for.
pub fn destination(topic: &str, retain: bool, ha_prefix: Option<&str>) -> Destination {
    match ha_prefix {
        Some(prefix) if topics::under_prefix(prefix, topic) => {
            // Our own discovery comes back live (retain=0) on the sweep subscription; only HA's
            // status and retained replays mean anything.
            if topic == topics::ha_status(prefix) || retain {
                Destination::HomeAssistant
            } else {
                Destination::Nowhere
            }
        }
        _ => Destination::Commands,
    }
}

impl Inbox {
    /// Clean sessions: subscriptions are gone after every reconnect.
    pub fn subscriptions(&self) -> Vec<String> {
        let commands = self.commands.as_ref().map(|_| &self.command_filters);
        let ha = self.ha.as_ref().map(|ha| &ha.filters);
        commands.into_iter().chain(ha).flatten().cloned().collect()
    }

    /// The broker accepted a connection.
    pub fn connected(&self) {
        if let Some(ha) = &self.ha {
            if ha.tx.try_send(HaMsg::Connected).is_err() {
                tracing::warn!(
                    "the Home Assistant task is behind; discovery waits for the next connect"
                );
            }
        }
    }

    pub fn deliver(&self, topic: &str, payload: &[u8], retain: bool) {
        let prefix = self.ha.as_ref().map(|h| h.prefix.as_str());
        match destination(topic, retain, prefix) {
            Destination::HomeAssistant => {
                let Some(ha) = &self.ha else { return };
                let msg = HaMsg::Incoming {
                    topic: topic.to_string(),
                    payload: payload.to_vec(),
                    retain,
                };
                if ha.tx.try_send(msg).is_err() {
                    tracing::warn!(
                        topic,
                        "the Home Assistant task is behind; a message was dropped"
                    );
                }
            }
            Destination::Commands => {
                let Some(tx) = &self.commands else { return };
                let msg = RouterMsg::Mqtt(Incoming {
                    topic: topic.to_string(),
                    payload: payload.to_vec(),
                    retain,
                    at: Instant::now(),
                });
                if tx.try_send(msg).is_err() {
                    tracing::warn!(topic, "too many command requests at once; one was dropped");
                }
            }
            Destination::Nowhere => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_to_the_command_router() {
        assert_eq!(
            destination("f2m/door/request/open", false, Some("homeassistant")),
            Destination::Commands
        );
        assert_eq!(
            destination("f2m/door/request/open", true, None),
            Destination::Commands,
            "a retained request still reaches the router, which refuses it with a response"
        );
    }

    #[test]
    fn lock_commands_go_to_the_command_router_retained_or_not() {
        for retain in [false, true] {
            assert_eq!(
                destination("f2m/door/lock/set", retain, Some("homeassistant")),
                Destination::Commands
            );
        }
    }

    #[test]
    fn home_assistants_status_and_retained_replays_go_to_home_assistant() {
        assert_eq!(
            destination("homeassistant/status", false, Some("homeassistant")),
            Destination::HomeAssistant
        );
        assert_eq!(
            destination(
                "homeassistant/button/f2m/x/config",
                true,
                Some("homeassistant")
            ),
            Destination::HomeAssistant
        );
    }

    #[test]
    fn our_own_live_discovery_echo_goes_nowhere() {
        assert_eq!(
            destination(
                "homeassistant/button/f2m/x/config",
                false,
                Some("homeassistant")
            ),
            Destination::Nowhere
        );
    }
}
