//! Test harness: an in-process simulator on 127.0.0.1:0, a real Mosquitto on a free loopback port,
//! and waiting on events with deadlines (never sleeping "long enough").
#![allow(dead_code)]

pub mod failure;
pub mod inproc;
pub mod lazycard;

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use face2mqtt::integrations::terminal::{Endpoint, TerminalClient};
use face2mqtt::secret::Secret;
use face2mqtt::simulator::{SimConfig, Simulator};
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

/// A loopback port nobody listens on right now (bound, then released): only for addresses that
/// must refuse connections ("unreachable"). Servers in tests bind port 0 and report their
/// address instead; Mosquitto, which cannot, retries on "address in use" (see [`Mosquitto`]).
pub fn unused_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("unused port")
}

/// A real Mosquitto broker on a loopback port, stoppable and restartable on the same port.
pub struct Mosquitto {
    pub port: u16,
    /// The TLS listener's port ([`Mosquitto::start_tls`]); 0 without one.
    pub tls_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Saves its state after every change, so a SIGKILL loses (almost) nothing of it.
    durable: bool,
    tls: Option<BrokerTls>,
    /// Users (name, password) and the ACL file's text ([`Mosquitto::start_with_acl`]).
    acl: Option<(Vec<(String, String)>, String)>,
}

/// A TLS listener beside the plain one: the bridge under test connects to it, while test
/// subscribers and publishers stay on the plain port (anonymous, as in every other test).
#[derive(Clone, Default)]
pub struct BrokerTls {
    /// The CA that client certificates must chain to (Mosquitto's `cafile`), PEM.
    pub ca_pem: String,
    /// The broker's certificate (with its chain) and key, PEM.
    pub cert_pem: String,
    pub key_pem: String,
    /// Refuse clients without a certificate signed by `ca_pem`.
    pub require_certificate: bool,
    /// The one user the TLS listener accepts (anonymous clients are refused there).
    pub login: Option<(String, String)>,
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

/// Why a Mosquitto did not come up.
enum NotUp {
    /// Another process holds the port (taken between our probe and Mosquitto's bind).
    AddressInUse,
    Other(String),
}

impl Mosquitto {
    /// Mosquitto cannot listen on port 0 and tell us the port, so: a port that was free a moment
    /// ago, and another one if something else took it meanwhile.
    pub fn start() -> Mosquitto {
        Mosquitto::launch(false)
    }

    /// With a TLS listener as well (`tls_port`, [`Mosquitto::tls_url`]).
    pub fn start_tls(tls: BrokerTls) -> Mosquitto {
        Mosquitto::launch_with(false, Some(tls))
    }

    fn launch(durable: bool) -> Mosquitto {
        Mosquitto::launch_with(durable, None)
    }

    /// With these users (anonymous clients stay allowed) and an ACL file (`acl_file`): lines
    /// before any `user` line are the anonymous clients' rules.
    pub fn start_with_acl(users: &[(&str, &str)], acl: &str) -> Mosquitto {
        Mosquitto::with_acl(users, acl, false)
    }

    /// [`Mosquitto::start_with_acl`], saving its state after every change
    /// ([`Mosquitto::start_durable`]).
    pub fn start_durable_with_acl(users: &[(&str, &str)], acl: &str) -> Mosquitto {
        Mosquitto::with_acl(users, acl, true)
    }

    fn with_acl(users: &[(&str, &str)], acl: &str, durable: bool) -> Mosquitto {
        failure::remember();
        let mut m = Mosquitto {
            port: 0,
            tls_port: 0,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            durable,
            tls: None,
            acl: Some((
                users
                    .iter()
                    .map(|(u, p)| (u.to_string(), p.to_string()))
                    .collect(),
                acl.to_string(),
            )),
        };
        let d = m.dir.path().to_path_buf();
        for (i, (user, password)) in users.iter().enumerate() {
            let mut c = Command::new("mosquitto_passwd");
            c.arg("-b");
            if i == 0 {
                c.arg("-c");
            }
            let status = c
                .arg(d.join("passwd"))
                .args([user, password])
                .status()
                .expect("mosquitto_passwd runs (it comes with mosquitto)");
            assert!(status.success(), "mosquitto_passwd failed");
        }
        std::fs::write(d.join("acl"), acl).expect("write the ACL");
        m.bind_and_spawn();
        m
    }

    /// Writes a new ACL and has the running broker read it (SIGHUP), as an admin fixing it does.
    pub fn set_acl(&mut self, acl: &str) {
        std::fs::write(self.dir.path().join("acl"), acl).expect("write the ACL");
        if let Some((_, text)) = self.acl.as_mut() {
            *text = acl.to_string();
        }
        let pid = self.pid().expect("mosquitto runs");
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) }, 0);
    }

    fn launch_with(durable: bool, tls: Option<BrokerTls>) -> Mosquitto {
        failure::remember();
        let mut m = Mosquitto {
            port: 0,
            tls_port: 0,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            durable,
            tls,
            acl: None,
        };
        if m.tls.is_some() {
            m.write_tls_files();
        }
        m.bind_and_spawn();
        m
    }

    /// Mosquitto cannot listen on port 0 and tell us the port: a port that was free a moment
    /// ago, and another one if something else took it meanwhile.
    fn bind_and_spawn(&mut self) {
        for _ in 0..20 {
            self.port = unused_port();
            if self.tls.is_some() {
                self.tls_port = unused_port();
            }
            match self.try_spawn() {
                Ok(()) => return,
                Err(NotUp::AddressInUse) => continue,
                Err(NotUp::Other(e)) => panic!("mosquitto did not start: {e}"),
            }
        }
        panic!("mosquitto found every port it tried in use");
    }

    /// A broker that saves sessions and queued messages after every change: test subscribers
    /// then miss nothing across a SIGKILL of it (what the bridge does is what is under test).
    pub fn start_durable() -> Mosquitto {
        Mosquitto::launch(true)
    }

    /// SIGKILL, as a crash or the OOM killer would; then start again on the same port and data.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// (Re)starts on `self.port`, which our previous instance may still be releasing.
    /// The broker's process id while it runs (the benches read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_spawn() {
                Ok(()) => return,
                Err(NotUp::AddressInUse) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(NotUp::AddressInUse) => {
                    panic!("mosquitto's port {} stayed in use", self.port)
                }
                Err(NotUp::Other(e)) => panic!("mosquitto did not restart: {e}"),
            }
        }
    }

    /// The PEM files and password file a TLS listener reads.
    fn write_tls_files(&self) {
        let Some(tls) = &self.tls else { return };
        let d = self.dir.path();
        for (name, text) in [
            ("ca.pem", &tls.ca_pem),
            ("server.pem", &tls.cert_pem),
            ("server.key", &tls.key_pem),
        ] {
            std::fs::write(d.join(name), text).expect("write a TLS file");
        }
        if let Some((user, password)) = &tls.login {
            let status = Command::new("mosquitto_passwd")
                .args(["-b", "-c"])
                .arg(d.join("passwd"))
                .args([user, password])
                .status()
                .expect("mosquitto_passwd runs (it comes with mosquitto)");
            assert!(status.success(), "mosquitto_passwd failed");
        }
    }

    /// The users' and the ACL's lines of mosquitto.conf.
    fn acl_lines(&self) -> String {
        match &self.acl {
            Some((users, _)) => {
                let d = self.dir.path().display();
                let passwd = if users.is_empty() {
                    String::new()
                } else {
                    format!("password_file {d}/passwd\n")
                };
                format!("{passwd}acl_file {d}/acl\n")
            }
            None => String::new(),
        }
    }

    /// The TLS listener's lines of mosquitto.conf (after the plain listener's).
    fn tls_listener(&self) -> String {
        let Some(tls) = &self.tls else {
            return String::new();
        };
        let d = self.dir.path().display();
        let login = match &tls.login {
            Some(_) => format!("allow_anonymous false\npassword_file {d}/passwd\n"),
            None => "allow_anonymous true\n".into(),
        };
        format!(
            "listener {port} 127.0.0.1\n{login}cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate {req}\n",
            port = self.tls_port,
            req = tls.require_certificate,
        )
    }

    /// Starts Mosquitto and waits until it says it runs (its listener is bound), or it exits.
    fn try_spawn(&mut self) -> Result<(), NotUp> {
        let conf = self.dir.path().join("mosquitto.conf");
        let log = self.dir.path().join("mosquitto.log");
        std::fs::write(
            &conf,
            format!(
                // With a TLS listener, anonymous access and the password file are set per listener.
                "{}{}listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_inflight_messages 0\nmax_queued_messages 100000\nmessage_size_limit 0\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type information\nlog_type notice\n{}{}",
                if self.tls.is_some() {
                    "per_listener_settings true\n"
                } else {
                    ""
                },
                // Started as root, Mosquitto drops to the user `mosquitto`, which cannot write
                // its database into our private temporary directory: a restart then forgot
                // every session ("Error saving in-memory database ... Permission denied"), and
                // a test subscriber missed what the bridge published before it resubscribed.
                // SAFETY: geteuid has no preconditions and cannot fail.
                if unsafe { libc::geteuid() } == 0 {
                    "user root\n"
                } else {
                    ""
                },
                self.port,
                self.dir.path().display(),
                if self.durable {
                    "autosave_interval 1\nautosave_on_changes true\n"
                } else {
                    ""
                },
                self.tls_listener(),
            ) + &self.acl_lines(),
        )
        .expect("write mosquitto.conf");
        // This run's lines start here: the file keeps the earlier runs' (for a failed test).
        let start = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let mut child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            // Appended: a restarted broker's log follows the first one's.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("mosquitto.log"),
            )
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = std::fs::read(&log).unwrap_or_default();
            let text = String::from_utf8_lossy(all.get(start..).unwrap_or_default());
            if let Ok(Some(status)) = child.try_wait() {
                return Err(if text.contains("Address already in use") {
                    NotUp::AddressInUse
                } else {
                    NotUp::Other(format!("exited with {status}: {text}"))
                });
            }
            if text.contains(" running") {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                terminate(&mut child, Duration::from_secs(1));
                return Err(NotUp::Other(format!(
                    "not running on port {} after 10 s: {text}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn tls_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.tls_port)
    }

    /// A clean stop (SIGTERM): Mosquitto saves its sessions, so test subscribers with
    /// persistent sessions miss nothing published while they reconnect after a restart.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(10));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A restart that loses every retained message and session, like a broker without
    /// persistence (or a new one).
    pub fn restart_forgetting(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.path().join("mosquitto.db"));
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default();
            eprintln!("---- mosquitto log ----\n{}", failure::tail(&log, 60));
            failure::repeat();
        }
        self.stop();
    }
}

/// SIGTERM, then SIGKILL if the process has not ended by `grace`.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An MQTT subscriber with a persistent session, collecting every message in arrival order.
pub struct Subscriber {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    stop: CancellationToken,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn subscribe(port: u16, filter: &str) -> Subscriber {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let id = format!("test-sub-{}", fastrand::u64(..));
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let stop = CancellationToken::new();
    let filter = filter.to_string();
    let token = stop.clone();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            let ev = tokio::select! {
                _ = token.cancelled() => return,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("subscribed in time")
        .expect("subscriber alive");
    Subscriber { rx, stop }
}

/// A `face2mqtt run` process with its own config and spool.
pub struct Bridge {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    env: Vec<(String, String)>,
}

/// The bridge binary: this build's, or the one in `FACE2MQTT_TEST_BIN` run through
/// `FACE2MQTT_TEST_WRAPPER` (the cross-built aarch64 binary under qemu, in CI).
pub fn bridge_command() -> Command {
    let bin = std::env::var_os("FACE2MQTT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_face2mqtt")));
    match std::env::var("FACE2MQTT_TEST_WRAPPER") {
        Ok(w) if !w.is_empty() => {
            let mut c = Command::new(w);
            c.arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

pub struct BridgeSetup<'a> {
    pub broker_port: u16,
    /// `mqtt` or `mqtts` (TLS, to [`Mosquitto::tls_port`]).
    pub scheme: &'a str,
    /// Extra keys of the `[mqtt]` section (TLS files, a login).
    pub extra_mqtt_keys: &'a str,
    pub sim: &'a Simulator,
    pub password: &'a str,
    pub extra_terminal_keys: &'a str,
    pub log_level: &'a str,
    /// Whole sections placed before `[[terminal]]` (e.g. `[commands]`).
    pub extra_sections: &'a str,
    /// Extra environment for the bridge process.
    pub env: &'a [(&'a str, &'a str)],
}

impl<'a> BridgeSetup<'a> {
    pub fn new(broker_port: u16, sim: &'a Simulator, password: &'a str) -> BridgeSetup<'a> {
        BridgeSetup {
            broker_port,
            scheme: "mqtt",
            extra_mqtt_keys: "",
            sim,
            password,
            extra_terminal_keys: "",
            log_level: "face2mqtt=trace,info",
            extra_sections: "",
            env: &[],
        }
    }
}

pub fn bridge_config(s: &BridgeSetup<'_>, spool: &Path) -> String {
    // FACE2MQTT_TEST_PROTOCOL=3.1.1 runs a suite under the other MQTT version (scripts/test).
    let protocol = match std::env::var("FACE2MQTT_TEST_PROTOCOL") {
        Ok(p) if !p.is_empty() && !s.extra_mqtt_keys.contains("protocol") => {
            format!("protocol = \"{p}\"\n")
        }
        _ => String::new(),
    };
    format!(
        r#"[mqtt]
url = "{scheme}://127.0.0.1:{broker}"
client_id = "bridge-under-test-{rand}"
reconnect_min = "50ms"
reconnect_max = "500ms"
{protocol}{mqtt_keys}

[spool]
dir = "{spool}"

[log]
level = "{log}"

{sections}

[[terminal]]
id = "front-door"
host = "127.0.0.1"
http_port = {http}
ws_port = {ws}
password = "{pw}"
request_timeout = "1s"
ping_interval = "200ms"
dead_after = "1s"
reconnect_min = "50ms"
reconnect_max = "500ms"
backfill_margin = "5s"
{extra}
"#,
        scheme = s.scheme,
        broker = s.broker_port,
        mqtt_keys = s.extra_mqtt_keys,
        protocol = protocol,
        rand = fastrand::u32(..),
        spool = spool.display(),
        http = s.sim.http_addr().port(),
        ws = s.sim.ws_addr().port(),
        pw = s.password,
        extra = s.extra_terminal_keys,
        log = s.log_level,
        sections = s.extra_sections,
    )
}

impl Bridge {
    pub fn start(setup: &BridgeSetup<'_>) -> Bridge {
        Bridge::start_with_spool_in(setup, None)
    }

    /// Starts with the spool in `spool` (e.g. on a small disk of its own).
    pub fn start_with_spool(setup: &BridgeSetup<'_>, spool: &Path) -> Bridge {
        Bridge::start_with_spool_in(setup, Some(spool))
    }

    fn start_with_spool_in(setup: &BridgeSetup<'_>, spool: Option<&Path>) -> Bridge {
        Bridge::start_written(setup.env, |dir| {
            let spool = spool.map_or_else(|| dir.join("spool"), Path::to_path_buf);
            bridge_config(setup, &spool)
        })
    }

    /// Starts with the config `write` returns, given the bridge's own directory (its spool goes
    /// in `<dir>/spool` by convention): for configs `BridgeSetup` does not describe (several
    /// terminals, other spool keys).
    pub fn start_written(env: &[(&str, &str)], write: impl FnOnce(&Path) -> String) -> Bridge {
        failure::remember();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, write(dir.path())).expect("write config");
        let mut b = Bridge {
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
        let child = bridge_command()
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
            .expect("bridge starts");
        self.child = Some(child);
    }

    /// Whether the process has ended (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns whether it exited 0 within the grace time.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => terminate(&mut c, Duration::from_secs(15)).is_some_and(|s| s.success()),
            None => true,
        }
    }

    /// Sends `signal` to the bridge process (SIGSTOP and SIGCONT hold it still and let it go).
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill has no memory preconditions; the pid is our own child's.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- bridge log ----\n{}", self.log_text());
            failure::repeat();
        }
        self.kill9();
    }
}

/// A number from `/proc/<pid>/<file>`: the first one after `key` (e.g. `status`, `VmHWM:`).
pub fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// A running process's peak resident set (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_field(pid, "status", "VmHWM:")
}

/// Record messages seen so far, parsed.
pub fn records_of(messages: &[(String, Vec<u8>, bool)]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .filter(|(t, _, _)| t.ends_with("/record"))
        .filter_map(|(_, p, _)| serde_json::from_slice(p).ok())
        .collect()
}

/// Drains the subscriber into `into` until `done(into)` holds or the deadline passes.
pub async fn collect_until(
    sub: &mut Subscriber,
    into: &mut Vec<(String, Vec<u8>, bool)>,
    deadline: Duration,
    what: &str,
    done: impl Fn(&[(String, Vec<u8>, bool)]) -> bool,
) {
    let end = tokio::time::Instant::now() + deadline;
    while !done(into) {
        match tokio::time::timeout_at(end, sub.rx.recv()).await {
            Ok(Some(m)) => into.push(m),
            Ok(None) => panic!("subscriber ended while waiting for: {what}"),
            Err(_) => panic!(
                "timed out after {deadline:?} waiting for: {what} ({} messages so far)",
                into.len()
            ),
        }
    }
}

/// Publishes one message (QoS 1) and waits for the broker's PUBACK.
pub async fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    let mut o = MqttOptions::new(format!("test-pub-{}", fastrand::u64(..)), "127.0.0.1", port);
    o.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
        .await
        .expect("queued");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => panic!("test publisher: {e}"),
            }
        }
    })
    .await
    .expect("published in time");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}

/// Event ids the broker acknowledged, read from a bridge log at trace level (`publishing seq=N
/// event_id=X`, then `broker acknowledged; leaves the spool seq=N`). What reached the broker,
/// whether or not a test subscriber was connected to see it.
pub fn acknowledged_event_ids(log: &str) -> std::collections::BTreeSet<String> {
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(key)? + key.len();
        Some(line[start..].split_whitespace().next()?.to_string())
    };
    let mut by_seq = std::collections::BTreeMap::new();
    let mut acked = std::collections::BTreeSet::new();
    for line in log.lines() {
        if line.contains(" publishing ") {
            if let (Some(seq), Some(id)) = (field(line, "seq="), field(line, "event_id=")) {
                by_seq.insert(seq, id);
            }
        } else if line.contains("broker acknowledged; leaves the spool") {
            if let Some(id) = field(line, "seq=").and_then(|s| by_seq.get(&s)) {
                acked.insert(id.clone());
            }
        }
    }
    acked
}

/// A small tmpfs, so a full disk is real. Needs root and `mount`: `None` where that is not
/// permitted (the caller says what it skips).
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The event ids of these records.
pub fn event_ids(records: &[serde_json::Value]) -> std::collections::BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| r["event_id"].as_str().map(String::from))
        .collect()
}

/// Waits until every id in `want` was published; on timeout says which are missing and whether
/// the bridge had received them (a loss in the bridge) or not (a loss before it).
pub async fn collect_records(
    sub: &mut Subscriber,
    seen: &mut Vec<(String, Vec<u8>, bool)>,
    want: &std::collections::BTreeSet<String>,
    deadline: Duration,
    bridge: &Bridge,
) {
    let end = tokio::time::Instant::now() + deadline;
    // Each message is parsed once: re-reading everything per message was quadratic.
    let mut got = event_ids(&records_of(seen));
    while !got.is_superset(want) {
        match tokio::time::timeout_at(end, sub.rx.recv()).await {
            Ok(Some(m)) => {
                got.extend(event_ids(&records_of(std::slice::from_ref(&m))));
                seen.push(m);
            }
            _ => {
                let got = event_ids(&records_of(seen));
                let missing: Vec<&String> = want.difference(&got).collect();
                let log = bridge.log_text();
                let received = missing
                    .iter()
                    .filter(|id| log.contains(id.as_str()))
                    .count();
                // Which side lost them: the bridge traces each publish (seq, event_id) and each
                // PUBACK (seq). Acknowledged-but-missing points at the broker, not the bridge.
                let acked: std::collections::BTreeSet<&str> = log
                    .lines()
                    .filter(|l| l.contains("broker acknowledged"))
                    .filter_map(|l| l.split("seq=").nth(1)?.split_whitespace().next())
                    .collect();
                let acked_missing = missing
                    .iter()
                    .filter(|id| {
                        log.lines()
                            .filter(|l| {
                                l.contains("publishing")
                                    && l.split_whitespace().any(|w| w == format!("event_id={id}"))
                            })
                            .any(|l| {
                                l.split("seq=")
                                    .nth(1)
                                    .and_then(|r| r.split_whitespace().next())
                                    .is_some_and(|q| acked.contains(q))
                            })
                    })
                    .count();
                panic!(
                    "after {deadline:?}, {} of {} records missing ({} of them received by the bridge, {} acknowledged by the broker), e.g. {:?}",
                    missing.len(), want.len(), received, acked_missing, &missing[..missing.len().min(5)]
                );
            }
        }
    }
}

/// Waits until the simulator has `n` record links (a deadline on the event, not a sleep).
pub async fn wait_link(sim: &Simulator, n: usize) {
    let mut c = sim.ws_clients();
    tokio::time::timeout(Duration::from_secs(20), c.wait_for(|k| *k == n))
        .await
        .expect("link state in time")
        .expect("watch");
}

/// Collects until the bridge says `online`: it follows the bridge's SUBSCRIBE on the same
/// connection, so requests published from here on are heard.
pub async fn until_online(sub: &mut Subscriber, seen: &mut Vec<(String, Vec<u8>, bool)>) {
    collect_until(sub, seen, Duration::from_secs(20), "bridge online", |m| {
        m.iter()
            .any(|(t, p, _)| t == "face2mqtt/bridge/state" && p == br#"{"state":"online"}"#)
    })
    .await;
}

/// Entries the bridge quarantined, as `face2mqtt spool status` reads them from its spool; for a
/// build without that command (an older one, run through `FACE2MQTT_TEST_BIN` to show what this
/// test finds), the quarantines its log reports.
pub fn quarantined(bridge: &Bridge) -> u64 {
    let out = bridge_command()
        .args(["spool", "status", "-c"])
        .arg(&bridge.config)
        .output()
        .expect("face2mqtt spool status runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let counted = text
        .lines()
        .find_map(|l| l.strip_prefix("quarantined"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    counted.unwrap_or_else(|| {
        eprintln!(
            "no `spool status` ({}): counting the quarantines the log reports",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        bridge
            .log_text()
            .matches("moved to the spool's quarantine")
            .count() as u64
    })
}

/// Pushes `n` recognitions from the simulator and remembers their event ids in `made` (what a
/// subscriber of the broker must see in the end).
pub fn push_recorded(sim: &Simulator, n: usize, made: &mut std::collections::BTreeSet<String>) {
    for _ in 0..n {
        let pushed = sim.push(None);
        let id = pushed
            .as_object()
            .and_then(|m| {
                face2mqtt::pipeline::record::normalize(
                    "front-door",
                    m,
                    face2mqtt::pipeline::record::Source::Live,
                )
                .ok()
            })
            .map(|r| r.record.event_id)
            .expect("the simulator's records normalize");
        made.insert(id);
    }
}

/// Where tests that could not run here write why (`scripts/test` prints them at the end, with
/// the count: a test that could not run never passes quietly).
pub fn skipped_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped.txt")
}

/// Says that `name` could not run here, and why: on stderr and in [`skipped_file`].
pub fn skipped(name: &str, why: &str) {
    use std::io::Write;
    eprintln!("SKIPPED {name}: {why}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skipped_file())
    {
        let _ = writeln!(f, "SKIPPED {name}: {why}");
    }
}

/// A finished command's standard output and error, as one text for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small grey JPEG of `side` pixels: a picture, but (under the unit's smallest face size) no
/// face in it.
pub fn tiny_jpeg(side: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let pixels = vec![128u8; usize::from(side) * usize::from(side)];
    jpeg_encoder::Encoder::new(&mut out, 80)
        .encode(&pixels, side, side, jpeg_encoder::ColorType::Luma)
        .expect("encodes");
    out
}

/// The event id the bridge gives a record the simulator pushed (`pipeline::record`).
pub fn event_id_of(pushed: &serde_json::Value) -> String {
    use face2mqtt::pipeline::record::{normalize, Source};
    let data = pushed.as_object().cloned().unwrap_or_default();
    normalize("front-door", &data, Source::Live)
        .expect("a pushed record normalizes")
        .record
        .event_id
}

/// Publishes `payload` on `request` and returns the JSON answer on `response` that follows it,
/// as the subscriber `sub` (which `seen` collects) saw it.
pub async fn request_answered(
    port: u16,
    sub: &mut Subscriber,
    seen: &mut Vec<(String, Vec<u8>, bool)>,
    (request, response): (&str, &str),
    payload: &[u8],
    retain: bool,
) -> serde_json::Value {
    let mark = seen.len();
    publish(port, request, payload, retain).await;
    let t = response.to_string();
    collect_until(
        sub,
        seen,
        Duration::from_secs(20),
        &format!("a response on {response}"),
        move |m| m[mark..].iter().any(|(tp, _, _)| *tp == t),
    )
    .await;
    let (_, p, _) = seen[mark..]
        .iter()
        .find(|(tp, _, _)| tp == response)
        .expect("response");
    serde_json::from_slice(p).expect("response is JSON")
}

/// Waits until the subscriber has seen the record with this event id, and returns it.
pub async fn record_seen(
    sub: &mut Subscriber,
    seen: &mut Vec<(String, Vec<u8>, bool)>,
    event_id: &str,
) -> serde_json::Value {
    let id = event_id.to_string();
    collect_until(
        sub,
        seen,
        Duration::from_secs(30),
        &format!("record {event_id} on the broker"),
        move |m| records_of(m).iter().any(|r| r["event_id"] == id.as_str()),
    )
    .await;
    records_of(seen)
        .into_iter()
        .find(|r| r["event_id"] == event_id)
        .expect("record")
}
