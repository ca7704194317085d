//! face2mqtt: a bridge between a face-recognition door terminal and MQTT / Home Assistant.
//!
//! See README.md for the layout and the invariants the code keeps.

pub(crate) mod backoff;
pub mod cli;
pub mod config;
pub mod door;
pub mod integrations;
pub(crate) mod messages;
pub(crate) mod pem;
pub mod pipeline;
pub mod runtime;
pub mod secret;
pub mod simulator;
pub(crate) mod stats;
pub(crate) mod throttle;
