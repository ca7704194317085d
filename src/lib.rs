//! face2mqtt: a bridge between a face-recognition door terminal and MQTT / Home Assistant.
//!
//! See README.md for the layout and the invariants the code keeps.

pub mod cli;
pub mod config;
pub mod mqtt;
pub mod record;
pub mod secret;
pub mod service;
pub mod simulator;
pub mod terminal;
