//! The terminal's API: request signing, the HTTP client, and the tolerant data model.

pub mod client;
pub mod lean;
pub mod model;
pub mod push;
pub mod sign;

pub use client::{
    Endpoint, RecordQuery, TerminalClient, TerminalError, UserQuery, MAX_ROSTER_BYTES, MAX_USERS,
};
pub use model::{ApiCode, DeviceInfo, PersonType, User};
