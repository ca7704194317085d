//! The control path: requests, the lock, the exit button and the LED, to the signed HTTP call.

pub mod command;
pub mod gpio;
