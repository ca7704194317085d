//! face2mqtt: a bridge between a face-recognition door terminal and MQTT / Home Assistant.
//!
//! See README.md for the layout and the invariants the code keeps.

pub mod backfill;
pub(crate) mod backoff;
pub(crate) mod budget;
pub mod cli;
pub(crate) mod clocks;
pub mod command;
pub mod config;
pub mod daemon;
pub(crate) mod exit;
pub mod gpio;
pub(crate) mod homeassistant;
pub mod ingest;
pub(crate) mod messages;
pub(crate) mod mqtt;
pub(crate) mod pem;
pub(crate) mod publish;
pub mod record;
pub mod secret;
pub mod service;
pub mod simulator;
pub mod spool;
pub(crate) mod stats;
pub(crate) mod supervisor;
pub mod terminal;
pub(crate) mod throttle;
pub(crate) mod watchdog;
