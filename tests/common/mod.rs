//! Test harness: an in-process simulator on 127.0.0.1:0, a real Mosquitto on a free loopback port,
//! and waiting on events with deadlines (never sleeping "long enough").
#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use face2mqtt::secret::Secret;
use face2mqtt::simulator::{SimConfig, Simulator};
use face2mqtt::terminal::{Endpoint, TerminalClient};
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "123456";

pub struct Sim {
    pub sim: Simulator,
    pub shutdown: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn simulator(config: SimConfig) -> Sim {
    let shutdown = CancellationToken::new();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let sim = Simulator::bind(config, any, any, shutdown.clone())
        .await
        .expect("simulator binds");
    Sim { sim, shutdown }
}

pub async fn default_simulator() -> Sim {
    simulator(SimConfig::default()).await
}

pub fn client_for(sim: &Simulator, password: &str, timeout: Duration) -> TerminalClient {
    TerminalClient::new(Endpoint {
        host: "127.0.0.1".into(),
        http_port: sim.http_addr().port(),
        ws_port: sim.ws_addr().port(),
        password: Secret::new(password),
        timeout,
    })
}

/// Polls `check` until it holds or the deadline passes; the deadline is a failure bound, not a
/// wait: the loop ends as soon as the condition holds.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (bound then released; the tiny race is acceptable for tests).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real Mosquitto broker on a loopback port, stoppable and restartable on the same port.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

pub fn mosquitto_binary() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("mosquitto is not installed: run ./scripts/test (it installs it) or apt-get install mosquitto");
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Mosquitto {
            port: free_port(),
            dir,
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\n",
                self.port
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}
