//! `face2mqtt spool`: see and mend the spool of a stopped bridge (what it holds, its quarantine).
//! sled allows one process at a time: while the bridge runs, its live figures are on MQTT.

use std::path::Path;

use super::{load, Failure};
use crate::pipeline::spool::{Spool, SpoolError};

#[derive(clap::Subcommand)]
pub enum SpoolAction {
    /// What the spool holds: records, bytes, photos, quarantined entries, each terminal's marks.
    Status,
    /// Entries that could not be published as they were (e.g. larger than the broker takes).
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
}

#[derive(clap::Subcommand)]
pub enum QuarantineAction {
    /// List them: sequence number, why, and the record.
    List,
    /// Put them back in the queue (published at the next start): once the cause is mended.
    Retry(Which),
    /// Forget them for good.
    Drop(Which),
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// Sequence numbers, as `list` shows them.
    seq: Vec<u64>,
    /// Every quarantined entry.
    #[arg(long)]
    all: bool,
}

pub fn spool(config: &Path, action: SpoolAction) -> Result<(), Failure> {
    let config = load(config)?;
    let spool = match Spool::open(&config.spool.dir, config.spool.max_size.0) {
        Ok(s) => s,
        Err(e) if e.is_locked() => {
            return Err(Failure::Runtime(format!(
                "the spool {} is open by a running bridge; stop it first (systemctl stop face2mqtt). Its live figures are on {}",
                config.spool.dir.display(),
                crate::messages::topics::diagnostics(&config.mqtt.base_topic)
            )))
        }
        Err(e) if e.is_permanent() => return Err(Failure::Config(e.to_string())),
        Err(e) => return Err(Failure::Runtime(e.to_string())),
    };
    let failed = |e: SpoolError| Failure::Runtime(e.to_string());
    match action {
        SpoolAction::Status => println!("{}", spool.status().map_err(failed)?),
        SpoolAction::Quarantine { action } => match action {
            QuarantineAction::List => {
                let entries = spool.quarantined_entries().map_err(failed)?;
                if entries.is_empty() {
                    println!("no quarantined entries");
                }
                for q in entries {
                    match q.entry {
                        Ok(e) => println!(
                            "{}\t{}\t{} {}\t{}",
                            q.seq, q.reason, e.terminal, e.event_id, e.json
                        ),
                        Err(why) => println!("{}\t{}\t(unreadable: {why})", q.seq, q.reason),
                    }
                }
            }
            QuarantineAction::Retry(which) => {
                for seq in chosen(&spool, &which).map_err(failed)? {
                    match spool.retry_quarantined(seq).map_err(failed)? {
                        Some(new) => println!("{seq}: queued again as {new}"),
                        None => println!("{seq}: no such quarantined entry"),
                    }
                }
            }
            QuarantineAction::Drop(which) => {
                for seq in chosen(&spool, &which).map_err(failed)? {
                    let dropped = spool.drop_quarantined(seq).map_err(failed)?;
                    let said = if dropped {
                        "dropped"
                    } else {
                        "no such quarantined entry"
                    };
                    println!("{seq}: {said}");
                }
                spool.flush().map_err(failed)?;
            }
        },
    }
    spool.close().map_err(failed)
}

fn chosen(spool: &Spool, which: &Which) -> Result<Vec<u64>, SpoolError> {
    if !which.all {
        return Ok(which.seq.clone());
    }
    let entries = spool.quarantined_entries()?;
    Ok(entries.into_iter().map(|q| q.seq).collect())
}
