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
