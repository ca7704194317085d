//! Living under systemd: the `Type=notify` protocol (READY=1 after every task runs, WATCHDOG=1
//! while the main loops are alive, STOPPING=1 on SIGTERM), spoken to a notify socket of our own.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

/// Reads notify messages until `done` holds over everything read, or the deadline passes.
fn read_until(
    sock: &UnixDatagram,
    deadline: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let end = Instant::now() + deadline;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out; notify messages so far: {got:?}"
        );
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_then_watchdog_while_running_then_stopping_on_sigterm() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    let notify = path.to_string_lossy().into_owned();
    let env = [
        ("NOTIFY_SOCKET", notify.as_str()),
        ("WATCHDOG_USEC", "400000"),
    ];
    let setup = BridgeSetup {
        env: &env,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let mut bridge = Bridge::start(&setup);

    let sock = std::sync::Arc::new(sock);
    let s2 = sock.clone();
    let got = tokio::task::spawn_blocking(move || {
        read_until(&s2, Duration::from_secs(20), |m| {
            m.iter().filter(|l| l.contains("WATCHDOG=1")).count() >= 3
        })
    })
    .await
    .expect("reader");
    let ready = got
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY=1 sent");
    let first_watchdog = got
        .iter()
        .position(|m| m.contains("WATCHDOG=1"))
        .expect("fed");
    assert!(ready < first_watchdog, "{got:?}");
    assert!(got[ready].contains("STATUS=running"), "{got:?}");
    // READY means every task runs: the log says so before.
    assert!(bridge.log_text().contains("face2mqtt running"));

    assert!(bridge.stop(), "clean exit on SIGTERM");
    // A clean stop ends with the writer's last flush, not with its timeout: every sender of the
    // writer is gone once inputs and the session have stopped.
    let log = bridge.log_text();
    assert!(log.contains("spool flushed and closed cleanly"), "{log}");
    assert!(!log.contains("did not finish"), "{log}");
    assert!(log.contains("face2mqtt stopped"), "{log}");
    // `read_until` fails the test unless STOPPING=1 arrives within its deadline.
    let s3 = sock.clone();
    tokio::task::spawn_blocking(move || {
        read_until(&s3, Duration::from_secs(5), |m| {
            m.iter().any(|l| l.contains("STOPPING=1"))
        })
    })
    .await
    .expect("reader");
}

fn signal(bridge: &Bridge, sig: libc::c_int) {
    let pid = bridge.pid().expect("running");
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

async fn log_says(bridge: &Bridge, what: &str, times: usize) {
    eventually(what, Duration::from_secs(20), || async {
        bridge.log_text().matches(what).count() >= times
    })
    .await;
}

/// Pushes `n` records and returns their event ids.
fn push_some(
    sim: &face2mqtt::simulator::Simulator,
    n: usize,
) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(|_| {
            let r = sim.push(Some(face2mqtt::integrations::terminal::PersonType::Staff));
            let map = r.as_object().expect("record");
            face2mqtt::pipeline::record::normalize(
                "front-door",
                map,
                face2mqtt::pipeline::record::Source::Live,
            )
            .expect("normalizes")
            .record
            .event_id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reloads_a_changed_config_keeps_a_bad_one_and_loses_no_record() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "+/+/record").await;
    let mut seen = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = std::sync::Arc::new(UnixDatagram::bind(&path).expect("bind notify socket"));
    let notify = path.to_string_lossy().into_owned();
    let env = [("NOTIFY_SOCKET", notify.as_str())];
    let setup = BridgeSetup {
        env: &env,
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    let mut bridge = Bridge::start(&setup);
    wait_link(&s.sim, 1).await;
    let mut want = push_some(&s.sim, 3);
    collect_records(&mut sub, &mut seen, &want, Duration::from_secs(20), &bridge).await;
    let good = std::fs::read_to_string(&bridge.config).expect("config");

    // Unchanged: nothing restarts.
    signal(&bridge, libc::SIGHUP);
    log_says(&bridge, "the config is unchanged", 1).await;
    // Invalid: logged, the running config kept.
    std::fs::write(&bridge.config, format!("{good}\nno_such_key = 1\n")).expect("write");
    signal(&bridge, libc::SIGHUP);
    log_says(&bridge, "reload refused, the running config is kept", 1).await;
    assert!(bridge.exited().is_none(), "still running");
    want.extend(push_some(&s.sim, 2));
    collect_records(&mut sub, &mut seen, &want, Duration::from_secs(20), &bridge).await;

    // Changed: every task starts again with it; records made meanwhile all arrive.
    let changed = good.replacen("[mqtt]\n", "[mqtt]\nbase_topic = \"site2\"\n", 1);
    assert_ne!(changed, good);
    std::fs::write(&bridge.config, changed).expect("write");
    signal(&bridge, libc::SIGHUP);
    want.extend(push_some(&s.sim, 5));
    log_says(&bridge, "face2mqtt running", 2).await;
    want.extend(push_some(&s.sim, 5));
    collect_records(&mut sub, &mut seen, &want, Duration::from_secs(30), &bridge).await;
    assert!(
        seen.iter().any(|(t, _, _)| t == "site2/front-door/record"),
        "records go out under the new base topic"
    );
    let s2 = sock.clone();
    tokio::task::spawn_blocking(move || {
        read_until(&s2, Duration::from_secs(10), |m| {
            let reloading = m.iter().position(|l| l.contains("RELOADING=1"));
            reloading.is_some_and(|r| m[r..].iter().any(|l| l.contains("READY=1")))
        })
    })
    .await
    .expect("reader");
    assert!(bridge.exited().is_none(), "still running");
    assert!(bridge.stop(), "clean exit on SIGTERM after a reload");
}

/// SIGTERM, then how long the bridge took to exit 0 (`None`: not cleanly within 15 s).
fn timed_stop(bridge: &mut Bridge) -> Option<Duration> {
    let t = Instant::now();
    bridge.stop().then(|| t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stops_within_five_seconds_with_the_broker_gone_and_records_waiting() {
    let mut broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut bridge = Bridge::start(&BridgeSetup::new(broker.port, &s.sim, PASSWORD));
    wait_link(&s.sim, 1).await;
    log_says(&bridge, "face2mqtt running", 1).await;
    broker.stop();
    push_some(&s.sim, 20);
    log_says(&bridge, "record received", 20).await;
    let took = timed_stop(&mut bridge).expect("a clean stop");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stops_within_five_seconds_while_the_terminal_answers_slowly() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let setup = BridgeSetup {
        extra_terminal_keys: "request_timeout = \"30s\"",
        ..BridgeSetup::new(broker.port, &s.sim, PASSWORD)
    };
    // The setup's own request_timeout comes first in the section: replace it.
    let mut bridge = Bridge::start_written(&[], |dir| {
        bridge_config(&setup, &dir.join("spool")).replacen("request_timeout = \"1s\"\n", "", 1)
    });
    wait_link(&s.sim, 1).await;
    s.sim.set_http_delay(Duration::from_secs(60));
    // A new link-up makes backfill ask a page that takes a minute to come.
    s.sim.close_links();
    log_says(&bridge, "record push link up", 2).await;
    let took = timed_stop(&mut bridge).expect("a clean stop");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stops_within_five_seconds_with_the_spool_full_and_records_held() {
    let mut broker = Mosquitto::start();
    let s = default_simulator().await;
    let setup = BridgeSetup::new(broker.port, &s.sim, PASSWORD);
    let mut bridge = Bridge::start_written(&[], |dir| {
        bridge_config(&setup, &dir.join("spool")).replacen(
            "[spool]\n",
            "[spool]\nmax_size = \"1MiB\"\nmemory = \"256KiB\"\n",
            1,
        )
    });
    wait_link(&s.sim, 1).await;
    log_says(&bridge, "face2mqtt running", 1).await;
    broker.stop();
    s.sim.set_photos(true);
    // Photo records of ~60 KB: the spool fills, then the budget, then ingest waits.
    for _ in 0..60 {
        s.sim
            .push(Some(face2mqtt::integrations::terminal::PersonType::Staff));
    }
    log_says(&bridge, "spool full", 1).await;
    let took = timed_stop(&mut bridge).expect("a clean stop");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
