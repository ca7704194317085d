//! The record path: from the terminal's link to the broker's PUBACK.

pub mod backfill;
pub(crate) mod budget;
pub(crate) mod clocks;
pub mod ingest;
pub(crate) mod publish;
pub mod record;
pub mod spool;
