// Over 450 lines: the code is 310; the rest is its paused-clock tests.
//! The command router: every request, lock command and button press passes the terminal's
//! [`Gate`] here, as it arrives, before it may reach the terminal's executor. It also owns what
//! each terminal's lock shows ([`Shown`]), and its one timer: the earliest moment a lock falls
//! back to `locked`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::captures::Captures;
use super::lock::{self, Decision, Shown};
use super::{
    request, response, Cmd, Gate, Incoming, Job, Origin, Payload, Refusal, Responder, RouterMsg,
};

/// One terminal as the router sees it.
pub struct Route {
    pub gate: Gate,
    pub jobs: mpsc::Sender<Job>,
    pub responder: Responder,
    /// What its lock shows; `None` on a terminal that may not open (it has no lock).
    pub lock: Option<Shown>,
}

/// The router's clock: tokio's, so its timers and the moments it compares run on one clock (a
/// test pauses and advances it).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What the people commands need beyond the gate: the stranger captures they enrol from, and
/// the longest pass (`people.max_pass`).
pub struct People {
    pub captures: Captures,
    pub max_pass: Duration,
}

/// Applies the safety rules and hands admitted commands to the terminal's executor.
pub async fn route(
    base: String,
    mut routes: HashMap<String, Route>,
    mut people: People,
    mut rx: mpsc::Receiver<RouterMsg>,
    shutdown: CancellationToken,
) {
    // Every lock starts `locked` (a door terminal closes by itself); the session keeps the
    // latest state and publishes it again after every CONNACK.
    for r in routes.values() {
        if let Some(shown) = &r.lock {
            r.responder.lock_state(shown.state()).await;
        }
    }
    loop {
        // The router's one timer: the earliest lock to fall back, or capture to forget.
        let due = routes
            .values()
            .filter_map(|r| r.lock.as_ref()?.relock_at())
            .chain(people.captures.next_expiry())
            .min();
        let wake = due.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std);
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(wake), if due.is_some() => {
                relock_due(&mut routes, now()).await;
                people.captures.expire(now());
                continue;
            }
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        match msg {
            RouterMsg::Mqtt(inc) => match lock::parse_topic(&base, &inc.topic) {
                Some(terminal) => on_lock(&mut routes, terminal, &inc).await,
                None => on_request(&base, &mut routes, &mut people, inc).await,
            },
            RouterMsg::Captured {
                terminal,
                event_id,
                jpeg,
            } => people.captures.keep(&terminal, &event_id, jpeg, now()),
            RouterMsg::Button {
                terminal,
                cmd,
                pin,
                at,
            } => {
                let Some(route) = routes.get_mut(&terminal) else {
                    continue;
                };
                if let Err(r) = route.gate.admit_local(cmd, at) {
                    route.responder.refuse(cmd, &r, None).await;
                    continue;
                }
                let remark = Some(format!("exit button (GPIO{pin})"));
                enqueue(
                    route,
                    Job {
                        cmd,
                        remark,
                        origin: Origin::Button { pin },
                        received: at,
                        people: None,
                    },
                    None,
                )
                .await;
            }
            RouterMsg::LockOpened { terminal, shows } => {
                let Some(route) = routes.get_mut(&terminal) else {
                    continue;
                };
                if let Some(shown) = route.lock.as_mut() {
                    let state = shown.opened(shows, now());
                    route.responder.lock_state(state).await;
                }
            }
        }
    }
}

/// `<base>/<t>/request/<cmd>`.
async fn on_request(
    base: &str,
    routes: &mut HashMap<String, Route>,
    people: &mut People,
    inc: Incoming,
) {
    let Some((terminal, cmd_word)) = request::parse_topic(base, &inc.topic) else {
        return;
    };
    let Some(route) = routes.get_mut(terminal) else {
        tracing::warn!(topic = %inc.topic, "request for a terminal that is not configured; ignored");
        return;
    };
    let Some(cmd) = Cmd::parse(cmd_word) else {
        // One fixed topic for every unknown name: answering on `response/<name>` would let any
        // client make the bridge publish to as many topics as it likes. The name is quoted
        // short and printable.
        let shown: String = cmd_word
            .chars()
            .take(40)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let names: Vec<&str> = Cmd::ALL.iter().map(|c| c.as_str()).collect();
        let text = format!("unknown command `{shown}` ({})", names.join(", "));
        tracing::warn!(terminal, "{text}");
        route
            .responder
            .send(
                crate::messages::topics::UNKNOWN_COMMAND,
                response(Err((text, None, "bad_request")), None),
            )
            .await;
        return;
    };
    let payload = match request::parse_payload(cmd, &inc.payload) {
        Ok(p) => p,
        Err(e) => {
            route
                .responder
                .refuse(cmd, &Refusal::BadPayload(e), None)
                .await;
            return;
        }
    };
    let wall = SystemTime::now();
    let admitted = route
        .gate
        .admit(cmd, &payload, inc.retain, inc.at, wall)
        .and_then(|()| {
            people_job(
                route,
                people,
                terminal,
                payload.people.clone(),
                inc.at,
                wall,
            )
        });
    let work = match admitted {
        Ok(work) => work,
        Err(r) => {
            route
                .responder
                .refuse(cmd, &r, payload.transaction.as_deref())
                .await;
            return;
        }
    };
    let job = Job {
        cmd,
        remark: payload.remark,
        origin: Origin::Mqtt {
            transaction: payload.transaction.clone(),
        },
        received: inc.at,
        people: work.map(Box::new),
    };
    enqueue(route, job, payload.transaction.as_deref()).await;
}

/// A people request made into its work (after the gate admitted the command): the window
/// checked, the capture looked up, and for an admit that opens, the gate's rules for `open`
/// (allowed, the hold time) applied last, so a refused request leaves the hold time as it was.
fn people_job(
    route: &mut Route,
    people: &mut People,
    terminal: &str,
    request: Option<super::people::PeopleRequest>,
    at: Instant,
    wall: SystemTime,
) -> Result<Option<super::PeopleJob>, Refusal> {
    let Some(request) = request else {
        return Ok(None);
    };
    let opens = matches!(
        request,
        super::people::PeopleRequest::Admit { open: true, .. }
    );
    let now = now();
    let captures = &mut people.captures;
    let job = super::people::job(
        request,
        |event_id| captures.photo(terminal, event_id, now),
        wall,
        people.max_pass,
    )?;
    if opens {
        match route.gate.admit_local(Cmd::Open, at) {
            Err(Refusal::NotAllowed) => return Err(Refusal::OpenNotAllowed),
            other => other?,
        }
    }
    Ok(Some(job))
}

/// `<base>/<t>/lock/set`: OPEN and UNLOCK are `open` requests before the same gate as
/// `request/open`, answered on `response/open`; the lock shows the door open only once the
/// executor reports that the terminal did it (`RouterMsg::LockOpened`). A refusal changes
/// nothing the lock shows.
async fn on_lock(routes: &mut HashMap<String, Route>, terminal: &str, inc: &Incoming) {
    let Some(route) = routes.get_mut(terminal) else {
        tracing::warn!(topic = %inc.topic, "lock command for a terminal that is not configured; ignored");
        return;
    };
    let (command, shows) = match lock::decide(&inc.payload, inc.retain, route.lock.is_some()) {
        Decision::AskGate { command, shows } => (command, shows),
        Decision::ShowLocked => {
            if let Some(shown) = route.lock.as_mut() {
                let state = shown.lock();
                route.responder.lock_state(state).await;
            }
            return;
        }
        Decision::Refuse(refusal) => {
            route.responder.refuse(Cmd::Open, &refusal, None).await;
            return;
        }
    };
    let payload = Payload {
        remark: Some(format!("lock: {}", command.payload())),
        ..Payload::default()
    };
    let admitted = route
        .gate
        .admit(Cmd::Open, &payload, inc.retain, inc.at, SystemTime::now());
    if let Err(r) = admitted {
        route.responder.refuse(Cmd::Open, &r, None).await;
        return;
    }
    let job = Job {
        cmd: Cmd::Open,
        remark: payload.remark,
        origin: Origin::Lock { shows },
        received: inc.at,
        people: None,
    };
    enqueue(route, job, None).await;
}

/// Every lock whose hold time is over shows `locked` again.
async fn relock_due(routes: &mut HashMap<String, Route>, now: Instant) {
    for r in routes.values_mut() {
        if let Some(state) = r.lock.as_mut().and_then(|s| s.expire(now)) {
            r.responder.lock_state(state).await;
        }
    }
}

async fn enqueue(route: &Route, job: Job, transaction: Option<&str>) {
    let cmd = job.cmd;
    if route.jobs.try_send(job).is_err() {
        let text = "the terminal is busy with earlier commands; refused".to_string();
        tracing::warn!(terminal = %route.responder.terminal, command = cmd.as_str(), "{text}");
        route
            .responder
            .send(
                cmd.as_str(),
                response(Err((text, None, "busy")), transaction),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::messages::{Outbound, RouterMsg};

    const HOLD: Duration = Duration::from_secs(3);
    const WINDOW: Duration = Duration::from_secs(900);

    struct Rig {
        tx: mpsc::Sender<RouterMsg>,
        jobs: mpsc::Receiver<Job>,
        out: mpsc::Receiver<Outbound>,
        stop: CancellationToken,
    }

    fn rig(allowed: &[Cmd]) -> Rig {
        let (tx, rx) = mpsc::channel(16);
        let (jobs_tx, jobs) = mpsc::channel(16);
        let (out_tx, out) = mpsc::channel(64);
        let allowed: BTreeSet<Cmd> = allowed.iter().copied().collect();
        let route = Route {
            lock: allowed.contains(&Cmd::Open).then(|| Shown::new(HOLD)),
            gate: Gate::new(Duration::from_secs(10), HOLD, allowed),
            jobs: jobs_tx,
            responder: Responder {
                base: "f2m".into(),
                terminal: "door".into(),
                out: out_tx,
            },
        };
        let people = People {
            captures: Captures::new(WINDOW, 1 << 20),
            max_pass: Duration::from_secs(86_400),
        };
        let stop = CancellationToken::new();
        let routes = HashMap::from([("door".to_string(), route)]);
        tokio::spawn(route_loop(routes, people, rx, stop.clone()));
        Rig {
            tx,
            jobs,
            out,
            stop,
        }
    }

    async fn route_loop(
        routes: HashMap<String, Route>,
        people: People,
        rx: mpsc::Receiver<RouterMsg>,
        stop: CancellationToken,
    ) {
        route("f2m".into(), routes, people, rx, stop).await;
    }

    impl Rig {
        async fn send(&self, cmd: &str, payload: &str) {
            let msg = RouterMsg::Mqtt(Incoming {
                topic: format!("f2m/door/request/{cmd}"),
                payload: payload.as_bytes().to_vec(),
                retain: false,
                at: now(),
            });
            self.tx.send(msg).await.expect("router runs");
        }

        /// Returns once the router has taken everything sent before (it answers in order).
        async fn settled(&mut self) {
            self.send("no_such_command", "").await;
            assert_eq!(self.answer().await["reason"], "bad_request");
        }

        /// The next answer on a response topic, as JSON.
        async fn answer(&mut self) -> Value {
            loop {
                match patient(self.out.recv()).await.expect("router runs") {
                    Outbound::Message { payload, .. } => {
                        return serde_json::from_slice(&payload).expect("json")
                    }
                    _ => continue,
                }
            }
        }

        /// The next state the lock shows.
        async fn lock_shows(&mut self) -> String {
            loop {
                if let Outbound::State { payload, .. } =
                    patient(self.out.recv()).await.expect("runs")
                {
                    return String::from_utf8(payload).expect("text");
                }
            }
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    /// Waits for what the router sends, for an hour of the paused clock: a router that sends
    /// nothing fails the test at once (the clock jumps when all is idle) instead of hanging it.
    async fn patient<T>(f: impl std::future::Future<Output = Option<T>>) -> Option<T> {
        tokio::time::timeout(Duration::from_secs(3600), f)
            .await
            .expect("the router answered")
    }

    fn admit(event_id: &str, open: bool) -> String {
        format!(r#"{{"event_id":"{event_id}","name":"Ann","until":"1h","open":{open}}}"#)
    }

    #[tokio::test(start_paused = true)]
    async fn an_opened_lock_shows_locked_again_exactly_the_hold_time_later() {
        let mut r = rig(&[Cmd::Open]);
        assert_eq!(r.lock_shows().await, "locked", "at start");
        r.tx.send(RouterMsg::LockOpened {
            terminal: "door".into(),
            shows: crate::messages::LockState::Open,
        })
        .await
        .expect("runs");
        assert_eq!(r.lock_shows().await, "open");
        let opened = tokio::time::Instant::now();
        assert_eq!(r.lock_shows().await, "locked");
        assert_eq!(opened.elapsed(), HOLD, "on the paused clock, to the tick");
    }

    #[tokio::test(start_paused = true)]
    async fn an_admit_within_the_window_carries_the_capture_and_after_it_is_refused() {
        let mut r = rig(&[Cmd::Open, Cmd::Admit]);
        let jpeg = vec![0xFF, 0xD8, 0xFF, 7];
        r.tx.send(RouterMsg::Captured {
            terminal: "door".into(),
            event_id: "e1".into(),
            jpeg: jpeg.clone(),
        })
        .await
        .expect("runs");
        r.settled().await;
        tokio::time::advance(WINDOW - Duration::from_secs(1)).await;
        r.send("admit", &admit("e1", true)).await;
        let job = patient(r.jobs.recv()).await.expect("a job");
        let Some(work) = job.people else {
            panic!("an admit carries its work")
        };
        let super::super::PeopleJob::Enrol { user, open: true } = *work else {
            panic!("an admit that opens enrols and opens")
        };
        assert_eq!(user.photo.as_deref(), Some("/9j/Bw=="), "the kept capture");

        // A second admit that opens, inside the hold time: the door's rule holds for it too.
        r.send("admit", &admit("e1", true)).await;
        assert_eq!(r.answer().await["reason"], "duplicate");

        tokio::time::advance(Duration::from_secs(1)).await;
        r.send("admit", &admit("e1", false)).await;
        assert_eq!(r.answer().await["reason"], "capture_gone");
        assert!(
            r.jobs.try_recv().is_err(),
            "nothing more reached the executor"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_capture_of_another_terminal_or_record_is_never_enrolled() {
        let mut r = rig(&[Cmd::Block]);
        r.tx.send(RouterMsg::Captured {
            terminal: "gate".into(),
            event_id: "e1".into(),
            jpeg: vec![0xFF, 0xD8, 0xFF],
        })
        .await
        .expect("runs");
        r.send("block", r#"{"event_id":"e1"}"#).await;
        assert_eq!(r.answer().await["reason"], "capture_gone");
        r.send("admit", &admit("e1", false)).await;
        assert_eq!(r.answer().await["reason"], "not_allowed");
        assert!(r.jobs.try_recv().is_err());
    }
}
