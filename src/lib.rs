//! face2mqtt: a bridge between a face-recognition door terminal and MQTT / Home Assistant.
//!
//! See README.md for the layout and the invariants the code keeps.

pub mod backfill;
pub mod backoff;
pub mod budget;
pub mod cli;
pub mod clocks;
pub mod command;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod gpio;
pub mod homeassistant;
pub mod ingest;
pub mod messages;
pub mod mqtt;
pub mod pem;
pub mod publish;
pub mod record;
pub mod secret;
pub mod service;
pub mod simulator;
pub mod spool;
pub mod stats;
pub mod supervisor;
pub mod terminal;
pub mod throttle;
pub mod watchdog;
