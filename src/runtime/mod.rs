//! The process: the wiring of the tasks and their shutdown, supervision, systemd, exit codes.

pub mod daemon;
pub(crate) mod exit;
pub mod service;
pub(crate) mod supervisor;
pub(crate) mod watchdog;
