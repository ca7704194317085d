//! Commands: MQTT requests, exit buttons and the time-sync timer, turned into the terminal's
//! signed calls one at a time per terminal.
//!
//! The router applies the safety rules ([`request::Gate`]) as requests arrive; each terminal has
//! its own executor task and queue, so a terminal that never answers delays only itself.

pub mod captures;
pub mod clock;
pub mod lock;
pub mod passes;
pub mod people;
pub mod request;
pub mod router;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::integrations::terminal::{TerminalClient, TerminalError};
use crate::messages::{topics, LockState, Outbound};
pub use crate::messages::{Incoming, RouterMsg};
use crate::pipeline::clocks::TerminalClock;
pub use people::PeopleJob;
pub use request::{Cmd, Gate, Payload, Refusal};
pub use router::{route, Route};

/// Where a command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Mqtt {
        transaction: Option<String>,
    },
    Button {
        pin: u8,
    },
    /// OPEN or UNLOCK on the lock's command topic; the lock shows `shows` once the door opened.
    Lock {
        shows: LockState,
    },
    /// The record link came up (the terminal may have rebooted with a wrong clock).
    LinkUp,
    Timer,
    /// A live record showed the terminal's clock more than the allowed skew off.
    ClockOff,
}

impl Origin {
    fn label(&self) -> &'static str {
        match self {
            Origin::Mqtt { .. } => "mqtt",
            Origin::Button { .. } => "button",
            Origin::Lock { .. } => "lock",
            Origin::LinkUp => "link-up",
            Origin::Timer => "timer",
            Origin::ClockOff => "clock-off",
        }
    }

    /// Requests from people are answered on the response topic and expire; internal ones not.
    fn by_a_person(&self) -> bool {
        matches!(
            self,
            Origin::Mqtt { .. } | Origin::Button { .. } | Origin::Lock { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub cmd: Cmd,
    pub remark: Option<String>,
    pub origin: Origin,
    pub received: Instant,
    /// What a people command does (`people.rs`); `None` for the door's commands.
    pub people: Option<Box<PeopleJob>>,
}

/// `{"status":"ok"}` or `{"status":"error","error":..,"code":..,"reason":..}`, with the
/// transaction echoed when the request had one.
pub fn response(
    result: Result<(), (String, Option<i64>, &str)>,
    transaction: Option<&str>,
) -> Vec<u8> {
    response_with(result, Map::new(), transaction)
}

/// [`response`] with more members (a people command's `user_id`).
pub fn response_with(
    result: Result<(), (String, Option<i64>, &str)>,
    mut m: Map<String, Value>,
    transaction: Option<&str>,
) -> Vec<u8> {
    match result {
        Ok(()) => {
            m.insert("status".into(), json!("ok"));
        }
        Err((error, code, reason)) => {
            m.insert("status".into(), json!("error"));
            m.insert("error".into(), json!(error));
            m.insert("code".into(), code.map(Value::from).unwrap_or(Value::Null));
            m.insert("reason".into(), json!(reason));
        }
    }
    let mut out = Value::Object(m).to_string();
    // The request's own JSON text, spliced in as sent (see `request::Payload::transaction`).
    if let Some(raw) = transaction {
        out.pop();
        out.push_str(",\"transaction\":");
        out.push_str(raw);
        out.push('}');
    }
    out.into_bytes()
}

fn terminal_failure(e: &TerminalError) -> (String, Option<i64>, &'static str) {
    let reason = match e {
        TerminalError::Api { .. } => "terminal",
        TerminalError::Timeout { .. } => "timeout",
        TerminalError::Unreachable { .. } => "unreachable",
        TerminalError::HttpStatus { .. }
        | TerminalError::Protocol { .. }
        | TerminalError::TooLarge { .. } => "terminal",
    };
    (e.to_string(), e.api_code().map(|c| c.code()), reason)
}

/// Answers for one terminal.
#[derive(Clone)]
pub struct Responder {
    pub base: String,
    pub terminal: String,
    pub out: mpsc::Sender<Outbound>,
}

impl Responder {
    pub async fn send(&self, cmd: &str, payload: Vec<u8>) {
        let topic = topics::response(&self.base, &self.terminal, cmd);
        let message = Outbound::Message {
            topic,
            payload,
            retain: false,
        };
        // Only fails once the session has ended (shutdown): nobody is left to answer.
        let _ = self.out.send(message).await;
    }

    /// What the terminal's lock shows, retained (and kept on the broker across its restarts).
    pub async fn lock_state(&self, state: LockState) {
        let message = Outbound::State {
            topic: topics::lock_state(&self.base, &self.terminal),
            payload: state.as_str().as_bytes().to_vec(),
        };
        tracing::debug!(terminal = %self.terminal, state = state.as_str(), "lock state");
        // As in `send`: fails only after the session ended.
        let _ = self.out.send(message).await;
    }

    async fn refuse(&self, cmd: Cmd, refusal: &Refusal, transaction: Option<&str>) {
        let text = refusal.text(cmd);
        tracing::warn!(terminal = %self.terminal, command = cmd.as_str(), reason = refusal.reason(), "{text}");
        self.send(
            cmd.as_str(),
            response(Err((text, None, refusal.reason())), transaction),
        )
        .await;
    }
}

/// Runs one terminal's commands, one at a time.
pub struct Executor {
    pub client: TerminalClient,
    pub jobs: mpsc::Receiver<Job>,
    pub responder: Responder,
    /// Person-made requests that waited longer than this behind a busy terminal are dropped.
    pub max_age: Duration,
    /// Refuse `sync_time` while this machine's clock is not synchronized.
    pub require_synchronized_clock: bool,
    pub clock_synchronized: Arc<dyn Fn() -> Result<bool, String> + Send + Sync>,
    /// Told when the door opened for the lock: only the executor knows the terminal did it,
    /// and only the router, which owns the lock's state, may show it.
    pub router: mpsc::Sender<RouterMsg>,
    /// The visitor passes sensor (`passes.rs`), on a terminal that allows a people command:
    /// read at start, after every people command, when a pass starts or ends, and this often.
    pub visitors: Option<Duration>,
}

impl Executor {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut read_at = self.visitors.map(|_| tokio::time::Instant::now());
        loop {
            let job = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(read_at.unwrap_or_else(tokio::time::Instant::now)), if read_at.is_some() => {
                    let every = self.visitors.unwrap_or_default();
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        next = self.read_visitors(every) => read_at = Some(next),
                    }
                    continue;
                }
                j = self.jobs.recv() => match j {
                    Some(j) => j,
                    None => return,
                },
            };
            let people = job.cmd.is_people();
            tokio::select! {
                // A command cut off by shutdown is not retried: the door must not open late.
                _ = shutdown.cancelled() => return,
                _ = self.execute(job) => {}
            }
            if people && self.visitors.is_some() {
                read_at = Some(tokio::time::Instant::now());
            }
        }
    }

    async fn execute(&self, job: Job) {
        let origin = job.origin.clone();
        let done = self.attempt(job).await;
        if let (true, Origin::Lock { shows }) = (done, origin) {
            let terminal = self.responder.terminal.clone();
            // Only fails once the router has ended (shutdown): nobody is left to show it.
            let _ = self
                .router
                .send(RouterMsg::LockOpened { terminal, shows })
                .await;
        }
    }

    /// Runs one job; `true` when the terminal did it.
    async fn attempt(&self, job: Job) -> bool {
        let terminal = &self.responder.terminal;
        let transaction = match &job.origin {
            Origin::Mqtt { transaction } => transaction.clone(),
            _ => None,
        };
        if job.origin.by_a_person() {
            if let Err(r) = request::still_fresh(job.received, Instant::now(), self.max_age) {
                self.responder
                    .refuse(job.cmd, &r, transaction.as_deref())
                    .await;
                return false;
            }
        }
        if job.cmd == Cmd::SyncTime && self.require_synchronized_clock {
            // Unknown counts as unsynchronized: never push a clock we cannot vouch for.
            let synced = (self.clock_synchronized)().unwrap_or_else(|e| {
                tracing::warn!(terminal = %terminal, "cannot tell whether this machine's clock is synchronized ({e}); not syncing the terminal");
                false
            });
            if !synced {
                if job.origin.by_a_person() {
                    self.responder
                        .refuse(
                            job.cmd,
                            &Refusal::ClockUnsynchronized,
                            transaction.as_deref(),
                        )
                        .await;
                    return false;
                }
                tracing::warn!(terminal = %terminal, origin = job.origin.label(), "{}", Refusal::ClockUnsynchronized.text(job.cmd));
                return false;
            }
        }
        let result = match job.cmd {
            Cmd::Open => self.client.open(job.remark.as_deref()).await,
            Cmd::Reboot => self.client.reboot().await,
            Cmd::SyncTime => self.client.sync_time().await,
            Cmd::Admit | Cmd::Pass | Cmd::Revoke | Cmd::Block => {
                return match job.people {
                    Some(p) => self.people(job.cmd, *p, transaction.as_deref()).await,
                    // The router makes every people job with its work; nothing else sends one.
                    None => false,
                };
            }
        };
        let origin = job.origin.label();
        match &result {
            Ok(()) => {
                tracing::info!(terminal = %terminal, command = job.cmd.as_str(), origin, "{} done", job.cmd.as_str())
            }
            Err(e) => tracing::warn!(
                terminal = %terminal, command = job.cmd.as_str(), origin,
                code = e.api_code().map(|c| c.code()).unwrap_or(0), "{} failed: {e}", job.cmd.as_str()
            ),
        }
        if job.origin.by_a_person() {
            let payload = response(
                result.as_ref().map(|_| ()).map_err(terminal_failure),
                transaction.as_deref(),
            );
            self.responder.send(job.cmd.as_str(), payload).await;
        }
        result.is_ok()
    }
}

/// Syncs the terminal's clock on every link-up, every `interval`, and at once when a live
/// record shows it off (`clock`, at most once a minute).
pub async fn time_sync(
    interval: Duration,
    mut link_up: watch::Receiver<u64>,
    clock: Arc<TerminalClock>,
    jobs: mpsc::Sender<Job>,
    shutdown: CancellationToken,
) {
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let origin = tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = link_up.changed() => match changed {
                Ok(()) => Origin::LinkUp,
                Err(_) => return,
            },
            _ = clock.resync_asked() => Origin::ClockOff,
            _ = tick.tick() => Origin::Timer,
        };
        // A full queue means commands are waiting anyway; the next tick or link-up syncs.
        let _ = jobs.try_send(Job {
            cmd: Cmd::SyncTime,
            remark: None,
            origin,
            received: Instant::now(),
            people: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ok_response_echoes_the_transaction() {
        let v: Value = serde_json::from_slice(&response(Ok(()), Some("\"t-1\""))).expect("json");
        assert_eq!(v, json!({"status": "ok", "transaction": "t-1"}));
        let out = response(Ok(()), Some("1.50"));
        assert_eq!(
            out, br#"{"status":"ok","transaction":1.50}"#,
            "echoed as sent"
        );
    }

    #[test]
    fn an_error_response_carries_the_terminal_code_and_a_reason() {
        let v: Value = serde_json::from_slice(&response(
            Err(("wrong password".into(), Some(10005), "terminal")),
            None,
        ))
        .expect("json");
        assert_eq!(
            v,
            json!({"status": "error", "error": "wrong password", "code": 10005, "reason": "terminal"})
        );
    }

    #[test]
    fn a_refusal_has_a_null_code() {
        let v: Value = serde_json::from_slice(&response(Err(("x".into(), None, "stale")), None))
            .expect("json");
        assert_eq!(v["code"], Value::Null);
    }
}
