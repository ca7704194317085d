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
                relock_due(&mut routes, Instant::now()).await;
                people.captures.expire(Instant::now());
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
            } => people
                .captures
                .keep(&terminal, &event_id, jpeg, Instant::now()),
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
                    let state = shown.opened(shows, Instant::now());
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
    let now = Instant::now();
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
