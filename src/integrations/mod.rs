//! The programs the bridge talks to: the terminal's API, the MQTT broker, Home Assistant.

pub(crate) mod homeassistant;
pub(crate) mod mqtt;
pub mod terminal;
