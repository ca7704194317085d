//! The bridge under test: its config (one or many simulated terminals), its process (this
//! build's binary, or an older build's beside it), and systemd's READY=1 over a notify socket of
//! our own.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use face2mqtt::simulator::Simulator;

use crate::common::PASSWORD;
use crate::measure::Proc;

/// A bridge's settings beyond the terminals. The keepalive is the production default (ping
/// every 10 s, dead after 33 s); reconnects are quick (50–500 ms) so that a bench measures the
/// bridge, not its backoff; backfill looks 5 s before the last record (production: 60 s).
pub struct Setup<'a> {
    pub broker_port: u16,
    pub terminals: Vec<(String, &'a Simulator)>,
    pub spool_keys: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    pub log_level: &'a str,
    /// Another build's binary (`BENCH_BASELINE_BIN`); `None`: this build's.
    pub bin: Option<&'a Path>,
}

impl<'a> Setup<'a> {
    pub fn one(broker_port: u16, sim: &'a Simulator) -> Setup<'a> {
        Setup {
            broker_port,
            terminals: vec![("front-door".into(), sim)],
            spool_keys: "",
            env: &[],
            log_level: "warn",
            bin: None,
        }
    }

    pub fn start(&self) -> Bridge {
        Bridge::start(self.bin, self.env, |dir| {
            // Keys every build since the spool's photo files (3520978) reads alike: an older
            // binary may be run on this config (`BENCH_BASELINE_BIN`).
            let mut c = format!(
                "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"bench-{}\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n\n[spool]\ndir = \"{}\"\n{}\n\n[log]\nlevel = \"{}\"\n\n",
                self.broker_port,
                fastrand::u32(..),
                dir.join("spool").display(),
                self.spool_keys,
                self.log_level,
            );
            for (id, sim) in &self.terminals {
                c.push_str(&format!(
                    "[[terminal]]\nid = \"{id}\"\nhost = \"127.0.0.1\"\nhttp_port = {}\nws_port = {}\npassword = \"{PASSWORD}\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\nbackfill_margin = \"5s\"\n\n",
                    sim.http_addr().port(),
                    sim.ws_addr().port(),
                ));
            }
            c
        })
    }
}

/// A `face2mqtt run` process with its own config, log and spool, restartable on them. The
/// binary is this build's (as `tests/common` runs it: `FACE2MQTT_TEST_BIN` and its wrapper are
/// honoured) or the one given, so that an older build runs the same scenario beside it.
pub struct Bridge {
    bin: Option<PathBuf>,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Bridge {
    /// Writes the config `write` returns (given the bridge's directory; its spool goes in
    /// `<dir>/spool`) and starts the process.
    fn start(
        bin: Option<&Path>,
        env: &[(&str, &str)],
        write: impl FnOnce(&Path) -> String,
    ) -> Bridge {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, write(dir.path())).expect("write config");
        let mut b = Bridge {
            bin: bin.map(Path::to_path_buf),
            child: None,
            log: dir.path().join("bridge.log"),
            dir,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        b.spawn();
        b
    }

    /// Starts (again) on the same config and spool.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = match &self.bin {
            Some(bin) => Command::new(bin),
            None => crate::common::bridge_command(),
        };
        let child = command
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("bridge {:?} starts: {e}", self.bin));
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM; whether it exited 0 within the grace time.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => crate::common::terminate(&mut c, Duration::from_secs(15))
                .is_some_and(|s| s.success()),
            None => true,
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- bridge log (last 60 lines) ----");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn proc_of(bridge: &Bridge) -> Proc {
    Proc(bridge.pid().expect("bridge running"))
}

pub fn spool_dir(bridge: &Bridge) -> PathBuf {
    bridge.dir.path().join("spool")
}

/// A notify socket the bridge reports READY=1 to (`NOTIFY_SOCKET`).
pub struct Notify {
    _dir: tempfile::TempDir,
    sock: UnixDatagram,
    pub path: String,
}

impl Notify {
    pub fn bind() -> Notify {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Notify {
            path: path.to_string_lossy().into_owned(),
            _dir: dir,
            sock,
        }
    }

    /// Waits for a datagram containing `what`.
    pub fn wait_for(&self, what: &str) {
        let mut buf = [0u8; 1024];
        loop {
            let n = self
                .sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("{what} within 60 s: {e}"));
            if String::from_utf8_lossy(&buf[..n]).contains(what) {
                return;
            }
        }
    }

    /// (Re)starts `bridge` on its config and spool; process start → READY=1.
    pub fn time_start(&self, bridge: &mut Bridge) -> Duration {
        let started = Instant::now();
        bridge.spawn();
        self.wait_for("READY=1");
        started.elapsed()
    }

    /// Stops `bridge` cleanly and swallows its notifications up to STOPPING=1.
    pub fn stop(&self, bridge: &mut Bridge) {
        bridge.stop();
        self.wait_for("STOPPING=1");
    }
}

/// Process start → READY=1 with an empty spool, the median of `runs`.
pub async fn ready_empty(broker_port: u16, sim: &Simulator, runs: usize) -> Duration {
    let notify = Notify::bind();
    let env = [("NOTIFY_SOCKET", notify.path.as_str())];
    let mut times = Vec::new();
    for _ in 0..runs {
        let setup = Setup {
            env: &env,
            ..Setup::one(broker_port, sim)
        };
        let started = Instant::now();
        let mut bridge = setup.start();
        notify.wait_for("READY=1");
        times.push(started.elapsed());
        notify.stop(&mut bridge);
    }
    times.sort();
    times[times.len() / 2]
}

/// One terminal's simulator, a fresh broker, a subscriber to the record topic and a bridge with
/// its link up and its start-up backfill done: where most scenarios begin.
pub struct Rig {
    pub broker: crate::common::Mosquitto,
    pub sim: crate::common::Sim,
    pub sub: crate::common::Subscriber,
    pub bridge: Bridge,
}

impl Rig {
    pub async fn start(config: face2mqtt::simulator::SimConfig) -> Rig {
        let broker = crate::common::Mosquitto::start();
        let sim = crate::common::simulator(config).await;
        let sub = crate::common::subscribe(broker.port, "face2mqtt/+/record").await;
        let bridge = Setup::one(broker.port, &sim.sim).start();
        crate::common::wait_link(&sim.sim, 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await; // the start-up backfill
        Rig {
            broker,
            sim,
            sub,
            bridge,
        }
    }
}
