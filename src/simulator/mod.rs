//! `face2mqtt simulate`: a terminal in software, for integrators and for our own tests.
//!
//! It serves the whole HTTP API with state, pushes records over the WebSocket in the real units'
//! dialect (see `docs/terminal-dialect.md`), and takes faults through [`Simulator`]'s methods or the
//! control API (`control.rs`, documented in the README).

pub mod avatar;
pub mod cjson;
pub mod control;
pub mod faces;
pub mod http;
pub mod state;
pub mod ws;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::integrations::terminal::PersonType;
use crate::secret::Secret;
use state::{HttpErrorFault, State, StoredRecord};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub password: Secret,
    /// Recognitions generated per second on average; 0 generates none (push them by hand).
    pub rate: f64,
    /// How long both ports stay down after `/api/device/reboot`.
    pub reboot_downtime: Duration,
    /// Records kept for `GET /api/record` (oldest dropped first).
    pub max_records: usize,
    pub seed: u64,
    /// Send capture and registered photos (off: records without photos, for benchmarks).
    pub photos: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            password: Secret::new("123456"),
            rate: 0.0,
            reboot_downtime: Duration::ZERO,
            max_records: 100_000,
            seed: 42,
            photos: true,
        }
    }
}

pub struct RebootRequest {
    pub down: Duration,
    /// Let the HTTP answer to `/api/device/reboot` get out before the ports close.
    pub after_answer: bool,
}

pub struct Shared {
    state: Mutex<State>,
    pushes: broadcast::Sender<Message>,
    close_links: watch::Sender<u64>,
    silent: watch::Sender<bool>,
    ws_clients: watch::Sender<usize>,
    up: watch::Sender<bool>,
    rate: watch::Sender<f64>,
    /// Bounded: a reboot already queued covers any asked for meanwhile (the unit is going down
    /// anyway), so a flood of reboot calls costs nothing.
    reboot_tx: mpsc::Sender<RebootRequest>,
    reboot_downtime: Duration,
}

impl Shared {
    /// The state lock. Held for short, synchronous work only, never across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running simulator; cheap to clone. Every fault the control API offers is a method here.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    ws_addr: SocketAddr,
    tracker: TaskTracker,
}

impl Simulator {
    /// Serves on the given listeners until `shutdown` is cancelled.
    pub fn start(
        config: SimConfig,
        http: TcpListener,
        ws: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<Simulator> {
        let http_addr = http.local_addr()?;
        let ws_addr = ws.local_addr()?;
        let (reboot_tx, reboot_rx) = mpsc::channel(4);
        let shared = Arc::new(Shared {
            state: Mutex::new(
                State::new(config.password.clone(), config.seed, config.max_records)
                    .with_photos(config.photos),
            ),
            // Deep enough that a burst of pushes never makes a link lag (and silently skip frames).
            pushes: broadcast::channel(16 * 1024).0,
            close_links: watch::channel(0).0,
            silent: watch::channel(false).0,
            ws_clients: watch::channel(0).0,
            up: watch::channel(true).0,
            rate: watch::channel(config.rate).0,
            reboot_tx,
            reboot_downtime: config.reboot_downtime,
        });
        let tracker = TaskTracker::new();
        let sim = Simulator {
            shared,
            http_addr,
            ws_addr,
            tracker: tracker.clone(),
        };
        tracker.spawn(sim.clone().supervise(http, ws, reboot_rx, shutdown.clone()));
        tracker.spawn(sim.clone().generate(shutdown));
        tracker.close();
        Ok(sim)
    }

    /// Binds both ports (use port 0 for any free port) and starts.
    pub async fn bind(
        config: SimConfig,
        http: SocketAddr,
        ws: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<Simulator> {
        let h = TcpListener::bind(http).await?;
        let w = TcpListener::bind(ws).await?;
        Simulator::start(config, h, w, shutdown)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// Waits until every task has ended after shutdown.
    pub async fn stopped(&self) {
        self.tracker.wait().await
    }

    /// Recognizes someone now: stores the record and pushes it to every link.
    pub fn push(&self, kind: Option<PersonType>) -> Value {
        self.emit(|st| {
            let kind = kind.unwrap_or_else(|| st.random_kind());
            st.recognize(kind)
        })
        .to_value()
    }

    /// Someone shows `jpeg` to the camera now (see [`State::recognize_face`]): the record is
    /// stored and pushed like any other.
    pub fn push_face(&self, jpeg: Arc<[u8]>) -> Value {
        self.emit(|st| st.recognize_face(jpeg)).to_value()
    }

    /// Makes a record with `recognize` under the state lock, counts it and pushes its frame to
    /// every link.
    fn emit(&self, recognize: impl FnOnce(&mut State) -> StoredRecord) -> StoredRecord {
        let (record, frame) = {
            let mut st = self.shared.state();
            let record = recognize(&mut st);
            st.pushed += 1;
            let frame = record.push_frame();
            (record, frame)
        };
        // No receivers is fine: the record is in the store for backfill.
        let _ = self.shared.pushes.send(Message::text(frame));
        record
    }

    /// Every user the simulated terminal has, as stored.
    pub fn users(&self) -> Vec<crate::integrations::terminal::User> {
        self.shared.state().users.values().cloned().collect()
    }

    /// The capture of the newest record, if it has one: the face of a person who comes back.
    pub fn newest_capture(&self) -> Option<Arc<[u8]>> {
        self.shared.state().newest_capture()
    }

    /// Recognizes someone now with fields changed by `edit` before the push (a firmware that
    /// sends more, or hostile values). Backfill serves the same edited record.
    pub fn push_edited(
        &self,
        kind: PersonType,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Value {
        let mut record = self.emit(|st| {
            let mut record = st.recognize(kind);
            edit(&mut record.fields);
            st.replace_newest(record.clone());
            record
        });
        record.capture = None;
        record.to_value()
    }

    /// Stores a record with these fields as is, filed under `sign_time` for `/api/record`'s
    /// time filter (so a record whose own `signTime` is absurd is still served): what a
    /// terminal with a broken clock or a hostile one returns to backfill. Not pushed.
    pub fn store_raw(&self, fields: Map<String, Value>, sign_time: u64) {
        let mut st = self.shared.state();
        let person_type = fields
            .get("type")
            .and_then(crate::integrations::terminal::model::lenient_i64)
            .unwrap_or(0);
        st.store(StoredRecord {
            fields,
            registered: None,
            capture: None,
            capture_no: 0,
            sign_time,
            person_type,
        });
    }

    /// Sends a frame as is (malformed, oversized, binary: whatever a test needs).
    pub fn push_raw(&self, message: Message) {
        let _ = self.shared.pushes.send(message);
    }

    /// Closes every WebSocket link with a close frame (clients may reconnect at once).
    pub fn close_links(&self) {
        self.shared.close_links.send_modify(|g| *g += 1);
    }

    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.send_replace(silent);
        self.shared.state().faults.silent = silent;
    }

    pub fn set_refuse_auth(&self, refuse: bool) {
        self.shared.state().faults.refuse_auth = refuse;
    }

    pub fn set_http_delay(&self, delay: Duration) {
        self.shared.state().faults.http_delay = delay;
    }

    /// The next `count` HTTP calls answer `code` (an API error code, or an HTTP status < 1000).
    pub fn fail_http(&self, code: i64, count: u32) {
        self.shared.state().faults.http_error = Some(HttpErrorFault { code, count });
    }

    /// Moves the terminal's clock: positive is ahead of real time.
    pub fn set_clock_skew(&self, skew_ms: i64) {
        self.shared.state().clock_skew_ms = skew_ms;
    }

    pub fn clear_faults(&self) {
        self.set_silent(false);
        let mut st = self.shared.state();
        st.faults = state::Faults::default();
        st.clock_skew_ms = 0;
    }

    /// Both ports go down for `down` (connections cut without a word), then come back.
    pub fn reboot(&self, down: Duration) {
        let _ = self.shared.reboot_tx.try_send(RebootRequest {
            down,
            after_answer: false,
        });
    }

    pub fn set_rate(&self, per_second: f64) {
        self.shared.rate.send_replace(per_second.max(0.0));
    }

    /// Recognitions from now on carry photos (`true`) or not: the benchmark's mix of both.
    pub fn set_photos(&self, photos: bool) {
        self.shared.state().set_photos(photos);
    }

    /// Push frames not yet sent on every link (0 without links). A link more than the push
    /// queue's depth (16,384 frames) behind skips frames, as a terminal that gives up on a slow
    /// client does; a caller pushing faster than the client reads waits on this to stay below.
    pub fn queued_pushes(&self) -> usize {
        self.shared.pushes.len()
    }

    /// Counters, calls received and faults in force, as the control API reports them.
    pub fn status(&self) -> Value {
        let mut v = self.shared.state().status();
        if let Value::Object(m) = &mut v {
            m.insert(
                "ws_clients".into(),
                Value::from(*self.shared.ws_clients.borrow()),
            );
            m.insert("up".into(), Value::from(*self.shared.up.borrow()));
            m.insert("rate".into(), serde_json::json!(*self.shared.rate.borrow()));
            m.insert("http".into(), Value::from(self.http_addr.to_string()));
            m.insert("ws".into(), Value::from(self.ws_addr.to_string()));
        }
        v
    }

    pub fn opens(&self) -> Vec<state::OpenEvent> {
        self.shared.state().opens.clone()
    }

    pub fn reboots(&self) -> u64 {
        self.shared.state().reboots
    }

    pub fn sync_times(&self) -> Vec<u64> {
        self.shared.state().sync_times.clone()
    }

    pub fn clock_skew_ms(&self) -> i64 {
        self.shared.state().clock_skew_ms
    }

    /// Watches the number of authenticated WebSocket links (tests wait on it).
    pub fn ws_clients(&self) -> watch::Receiver<usize> {
        self.shared.ws_clients.subscribe()
    }

    /// Watches whether the ports are up (false during a reboot).
    pub fn up(&self) -> watch::Receiver<bool> {
        self.shared.up.subscribe()
    }

    async fn supervise(
        self,
        mut http: TcpListener,
        mut ws: TcpListener,
        mut reboots: mpsc::Receiver<RebootRequest>,
        shutdown: CancellationToken,
    ) {
        loop {
            let gen = shutdown.child_token();
            let serving = TaskTracker::new();
            let shared = self.shared.clone();
            serving.spawn(serve_http(http, gen.clone(), move |req| {
                http::handle(shared.clone(), req)
            }));
            let (shared, link_gen) = (self.shared.clone(), gen.clone());
            serving.spawn(accept(ws, gen.clone(), move |stream| {
                // Each push is one frame, written whole. With Nagle on, a small frame sent while
                // the previous one is unacknowledged waits for the bridge's delayed ACK (up to
                // 40 ms): that was the p99 of ~41 ms without photos in every benchmark run.
                let _ = stream.set_nodelay(true);
                ws::serve_link(shared.clone(), stream, link_gen.clone())
            }));
            serving.close();
            self.shared.up.send_replace(true);
            // A reboot with no downtime configured is only counted (the HTTP layer did that).
            let request = loop {
                let r = tokio::select! {
                    _ = shutdown.cancelled() => None,
                    r = reboots.recv() => r,
                };
                match r {
                    Some(req) if req.after_answer && req.down.is_zero() => continue,
                    other => break other,
                }
            };
            let Some(request) = request else {
                gen.cancel();
                serving.wait().await;
                return;
            };
            if request.after_answer {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tracing::info!(down = ?request.down, "simulator rebooting: both ports down");
            gen.cancel();
            serving.wait().await;
            self.shared.up.send_replace(false);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(request.down) => {}
            }
            let Some((h, w)) = rebind(self.http_addr, self.ws_addr, &shutdown).await else {
                return;
            };
            http = h;
            ws = w;
            tracing::info!("simulator back up");
        }
    }

    /// Recognitions at the configured rate, with exponential gaps like people at a door.
    async fn generate(self, shutdown: CancellationToken) {
        let mut rate = self.shared.rate.subscribe();
        let mut rng = fastrand::Rng::new();
        loop {
            let r = *rate.borrow_and_update();
            if r <= 0.0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = rate.changed() => if changed.is_err() { return },
                }
                continue;
            }
            let gap = -(1.0 - rng.f64()).ln() / r;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = rate.changed() => continue,
                _ = tokio::time::sleep(Duration::from_secs_f64(gap.min(3600.0))) => {
                    if *self.shared.up.borrow() {
                        self.push(None);
                    }
                }
            }
        }
    }
}

/// Accepts connections until `gen` is cancelled, each served by its own task, then waits for
/// those to end.
async fn accept<F>(listener: TcpListener, gen: CancellationToken, serve: impl Fn(TcpStream) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let conns = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = gen.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        conns.spawn(serve(stream));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// Serves HTTP/1 with `handle` on every connection accepted until `gen` is cancelled, which
/// also drops the connections still open.
pub(crate) async fn serve_http<H, F>(listener: TcpListener, gen: CancellationToken, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    accept(listener, gen.clone(), move |stream| {
        let conn = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service_fn(handle.clone()));
        let gen = gen.clone();
        async move {
            tokio::select! {
                _ = conn => {}
                _ = gen.cancelled() => {}
            }
        }
    })
    .await
}

async fn rebind(
    http: SocketAddr,
    ws: SocketAddr,
    shutdown: &CancellationToken,
) -> Option<(TcpListener, TcpListener)> {
    loop {
        if let (Ok(h), Ok(w)) = (TcpListener::bind(http).await, TcpListener::bind(ws).await) {
            return Some((h, w));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}
