//! The command router: every request and button press passes the terminal's [`Gate`] here, as
//! it arrives, before it may reach the terminal's executor.

use std::collections::HashMap;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{request, response, Cmd, Gate, Job, Origin, Refusal, Responder, RouterMsg};

/// One terminal as the router sees it.
pub struct Route {
    pub gate: Gate,
    pub jobs: mpsc::Sender<Job>,
    pub responder: Responder,
}

/// Applies the safety rules and hands admitted commands to the terminal's executor.
pub async fn route(
    base: String,
    mut routes: HashMap<String, Route>,
    mut rx: mpsc::Receiver<RouterMsg>,
    shutdown: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        match msg {
            RouterMsg::Mqtt(inc) => {
                let Some((terminal, cmd_word)) = request::parse_topic(&base, &inc.topic) else {
                    continue;
                };
                let Some(route) = routes.get_mut(terminal) else {
                    tracing::warn!(topic = %inc.topic, "request for a terminal that is not configured; ignored");
                    continue;
                };
                let Some(cmd) = Cmd::parse(cmd_word) else {
                    let text = format!("unknown command `{cmd_word}` (open, reboot, sync_time)");
                    tracing::warn!(terminal, "{text}");
                    route
                        .responder
                        .send(cmd_word, response(Err((text, None, "bad_request")), None))
                        .await;
                    continue;
                };
                let payload = match request::parse_payload(cmd, &inc.payload) {
                    Ok(p) => p,
                    Err(e) => {
                        route
                            .responder
                            .refuse(cmd, &Refusal::BadPayload(e), None)
                            .await;
                        continue;
                    }
                };
                if let Err(r) =
                    route
                        .gate
                        .admit(cmd, &payload, inc.retain, inc.at, SystemTime::now())
                {
                    route
                        .responder
                        .refuse(cmd, &r, payload.transaction.as_deref())
                        .await;
                    continue;
                }
                let job = Job {
                    cmd,
                    remark: payload.remark,
                    origin: Origin::Mqtt {
                        transaction: payload.transaction.clone(),
                    },
                    received: inc.at,
                };
                enqueue(route, job, payload.transaction.as_deref()).await;
            }
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
                    },
                    None,
                )
                .await;
            }
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
