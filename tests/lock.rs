//! The door as Home Assistant's lock, end to end: `<base>/<t>/lock/set` → the gate → the signed
//! open on the simulator → `response/open` and `<base>/<t>/lock/state`. And what must NOT open.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

type Msg = (String, Vec<u8>, bool);

const LOCK_SET: &str = "face2mqtt/front-door/lock/set";
const LOCK_STATE: &str = "face2mqtt/front-door/lock/state";
const RESPONSE: &str = "face2mqtt/front-door/response/open";

fn sections(open_hold: &str) -> String {
    format!("[commands]\nrequire_synchronized_clock = false\nopen_hold = \"{open_hold}\"\n")
}

/// The lock states published from `from` on, in order.
fn states(m: &[Msg], from: usize) -> Vec<String> {
    m[from..]
        .iter()
        .filter(|(t, _, _)| t == LOCK_STATE)
        .map(|(_, p, _)| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// Whether `want` appears in `got` in this order (other states may come between).
fn in_order(got: &[String], want: &[&str]) -> bool {
    let mut rest = want.iter().peekable();
    for g in got {
        if rest.peek().is_some_and(|w| **w == g.as_str()) {
            rest.next();
        }
    }
    rest.peek().is_none()
}

struct Rig {
    broker: Mosquitto,
    sim: Sim,
    sub: Subscriber,
    _bridge: Bridge,
    seen: Vec<Msg>,
}

/// A bridge on a fresh broker and simulator, once it listens (and, with the right password,
/// its record link is up). `before` runs on the broker before the bridge starts.
async fn rig_with(
    password: &str,
    sections: &str,
    terminal_keys: &str,
    before: &[(&str, &[u8])],
) -> Rig {
    let broker = Mosquitto::start();
    for (topic, payload) in before {
        publish(broker.port, topic, payload, true).await;
    }
    let sim = default_simulator().await;
    let sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&BridgeSetup {
        extra_sections: sections,
        extra_terminal_keys: terminal_keys,
        ..BridgeSetup::new(broker.port, &sim.sim, password)
    });
    let mut r = Rig {
        broker,
        sim,
        sub,
        _bridge: bridge,
        seen: Vec::new(),
    };
    // `online` follows the bridge's SUBSCRIBE on the same connection: commands are heard now.
    until_online(&mut r.sub, &mut r.seen).await;
    if password == PASSWORD {
        wait_link(&r.sim.sim, 1).await;
    }
    r
}

async fn rig(sections: &str) -> Rig {
    let r = rig_with(PASSWORD, sections, "", &[]).await;
    r.shows_locked_from_the_start().await
}

impl Rig {
    async fn shows_locked_from_the_start(mut self) -> Rig {
        collect_until(
            &mut self.sub,
            &mut self.seen,
            Duration::from_secs(20),
            "the lock's first state",
            |m| !states(m, 0).is_empty(),
        )
        .await;
        assert_eq!(states(&self.seen, 0), ["locked"]);
        self
    }

    /// Sends a lock command; returns where its consequences start in `seen`.
    async fn lock(&mut self, payload: &[u8]) -> usize {
        let mark = self.seen.len();
        publish(self.broker.port, LOCK_SET, payload, false).await;
        mark
    }

    async fn response_after(&mut self, mark: usize) -> Value {
        collect_until(
            &mut self.sub,
            &mut self.seen,
            Duration::from_secs(20),
            "a response on response/open",
            |m| m[mark..].iter().any(|(t, _, _)| t == RESPONSE),
        )
        .await;
        let (_, p, _) = self.seen[mark..]
            .iter()
            .find(|(t, _, _)| t == RESPONSE)
            .expect("response");
        serde_json::from_slice(p).expect("response is JSON")
    }

    async fn states_after(&mut self, mark: usize, want: &[&str]) {
        collect_until(
            &mut self.sub,
            &mut self.seen,
            Duration::from_secs(20),
            &format!("lock states {want:?}"),
            |m| in_order(&states(m, mark), want),
        )
        .await;
    }

    /// Publishes are delivered in order: once the `locked` a LOCK asks for is here, anything the
    /// bridge published before it is here too.
    async fn settle(&mut self) {
        let mark = self.lock(b"LOCK").await;
        self.states_after(mark, &["locked"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_on_the_lock_opens_once_and_shows_open_for_the_hold_time_then_locked() {
    let mut r = rig(&sections("1s")).await;
    let mark = r.lock(b"OPEN").await;
    assert_eq!(r.response_after(mark).await["status"], "ok");
    r.states_after(mark, &["open"]).await;
    let shown = Instant::now();
    r.states_after(mark, &["open", "locked"]).await;
    assert!(
        shown.elapsed() >= Duration::from_millis(500),
        "`locked` came {:?} after `open`, long before the 1 s hold ended",
        shown.elapsed()
    );
    assert_eq!(states(&r.seen, mark), ["open", "locked"]);
    let opens = r.sim.sim.opens();
    assert_eq!(opens.len(), 1);
    assert_eq!(opens[0].remark.as_deref(), Some("lock: OPEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_on_the_lock_opens_once_and_shows_unlocked_then_locked() {
    let mut r = rig(&sections("300ms")).await;
    let mark = r.lock(b"unlock").await;
    assert_eq!(r.response_after(mark).await["status"], "ok");
    r.states_after(mark, &["unlocked", "locked"]).await;
    assert_eq!(states(&r.seen, mark), ["unlocked", "locked"]);
    let opens = r.sim.sim.opens();
    assert_eq!(opens.len(), 1);
    assert_eq!(opens[0].remark.as_deref(), Some("lock: UNLOCK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_opens_nothing_and_shows_locked_even_during_the_hold() {
    // A hold far longer than any wait below: a `locked` seen here comes from LOCK, not the timer.
    let mut r = rig(&sections("60s")).await;
    let mark = r.lock(b"LOCK").await;
    r.states_after(mark, &["locked"]).await;
    let mark = r.lock(b"OPEN").await;
    r.states_after(mark, &["open"]).await;
    let mark = r.lock(b"LOCK").await;
    r.states_after(mark, &["locked"]).await;
    assert_eq!(r.sim.sim.opens().len(), 1, "LOCK never reaches the door");
    let answered: Vec<&Msg> = r.seen.iter().filter(|(t, _, _)| t == RESPONSE).collect();
    assert_eq!(answered.len(), 1, "only the OPEN is answered: {answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_open_waiting_on_the_lock_topic_never_opens() {
    let before: [(&str, &[u8]); 1] = [(LOCK_SET, b"OPEN")];
    let mut r = rig_with(PASSWORD, &sections("100ms"), "", &before).await;
    let resp = r.response_after(0).await;
    assert_eq!(resp["reason"], "retained", "{resp}");
    r.settle().await;
    assert!(r.sim.sim.opens().is_empty(), "the retained OPEN opened");
    assert!(
        states(&r.seen, 0).iter().all(|s| s == "locked"),
        "{:?}",
        states(&r.seen, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_the_gate_holds_back_leaves_the_lock_locked_and_says_why() {
    let mut r = rig(&sections("60s")).await;
    let mark = r.seen.len();
    publish(
        r.broker.port,
        "face2mqtt/front-door/request/open",
        b"",
        false,
    )
    .await;
    assert_eq!(r.response_after(mark).await["status"], "ok");
    let mark = r.lock(b"OPEN").await;
    let resp = r.response_after(mark).await;
    assert_eq!(resp["status"], "error", "{resp}");
    assert_eq!(resp["reason"], "duplicate", "{resp}");
    r.settle().await;
    assert_eq!(states(&r.seen, mark), ["locked"]);
    assert_eq!(r.sim.sim.opens().len(), 1, "the door opened once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_the_terminal_refuses_leaves_the_lock_locked_with_the_terminals_answer() {
    let r = rig_with("wrong", &sections("100ms"), "", &[]).await;
    let mut r = r.shows_locked_from_the_start().await;
    let mark = r.lock(b"OPEN").await;
    let resp = r.response_after(mark).await;
    assert_eq!(resp["code"], 10005, "{resp}");
    r.settle().await;
    assert_eq!(states(&r.seen, mark), ["locked"]);
    assert!(r.sim.sim.opens().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_that_may_not_open_has_no_lock_and_refuses_its_open() {
    let mut r = rig_with(
        PASSWORD,
        &sections("100ms"),
        "commands = [\"reboot\"]\n",
        &[],
    )
    .await;
    let mark = r.lock(b"OPEN").await;
    let resp = r.response_after(mark).await;
    assert_eq!(resp["reason"], "not_allowed", "{resp}");
    let mark = r.lock(b"LOCK").await;
    let resp = r.response_after(mark).await;
    assert_eq!(resp["reason"], "not_allowed", "{resp}");
    assert!(r.sim.sim.opens().is_empty());
    assert!(states(&r.seen, 0).is_empty(), "no lock, no lock state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_a_lock_command_opens_nothing_and_is_answered() {
    let mut r = rig(&sections("100ms")).await;
    for garbage in [
        &b"xyzzy"[..],
        b"",
        b"PRESS",
        b"{\"state\":\"OPEN\"}",
        b"\xff\xfe",
    ] {
        let mark = r.lock(garbage).await;
        let resp = r.response_after(mark).await;
        assert_eq!(resp["reason"], "bad_request", "{resp}");
        assert!(
            resp["error"]
                .as_str()
                .unwrap_or("")
                .contains("lock command"),
            "{resp}"
        );
    }
    r.settle().await;
    assert!(r.sim.sim.opens().is_empty());
    assert!(states(&r.seen, 0).iter().all(|s| s == "locked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_state_comes_back_after_the_broker_forgot_it() {
    let mut r = rig(&sections("100ms")).await;
    r.broker.restart_forgetting();
    let mark = r.seen.len();
    r.states_after(mark, &["locked"]).await;
    // What a Home Assistant that starts now reads: the retained state.
    let mut fresh = subscribe(r.broker.port, LOCK_STATE).await;
    let mut retained = Vec::new();
    collect_until(
        &mut fresh,
        &mut retained,
        Duration::from_secs(10),
        "the retained lock state",
        |m| !m.is_empty(),
    )
    .await;
    assert_eq!(
        retained[0],
        (LOCK_STATE.to_string(), b"locked".to_vec(), true)
    );
}
