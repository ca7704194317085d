//! Scenario 8: Node-RED 4 beside the bridge, on the same simulator and the same Mosquitto: a
//! flow `websocket in → mqtt out` (QoS 1) on the terminal's signed record push, the way a user
//! would wire it. Installed into `target/node-red` with npm when missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use face2mqtt::integrations::terminal::sign;
use face2mqtt::secret::Secret;
use face2mqtt::simulator::{SimConfig, Simulator};

use crate::bridge::{proc_of, Setup};
use crate::burst::{burst, Burst, Listen};
use crate::common::{simulator, subscribe, terminate, unused_port, wait_link, Mosquitto, PASSWORD};
use crate::latency::{paced, Latency};
use crate::measure::{self, Proc};

const TOPIC: &str = "nodered/record";

/// Node-RED's `red.js`, installed with npm into `target/node-red` if it is not there yet.
pub fn install() -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let prefix = target.join("node-red");
    let red = prefix.join("node_modules/node-red/red.js");
    if red.exists() {
        return Ok(red);
    }
    println!("installing Node-RED 4 into {} ...", prefix.display());
    std::fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg("node-red@4")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if !out.status.success() || !red.exists() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!(
            "npm install node-red@4 failed ({}): {last}",
            out.status
        ));
    }
    Ok(red)
}

/// A Node-RED process with the flow in a userDir of its own.
pub struct NodeRed {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl NodeRed {
    /// The WebSocket URL is signed now, as the bridge signs it for each connect: valid for the
    /// terminal's 5 minutes, which outlasts this scenario (Node-RED cannot re-sign).
    pub fn start(red: &Path, sim: &Simulator, broker_port: u16) -> NodeRed {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, query) = sign::signed_query(&Secret::new(PASSWORD));
        let url = format!("ws://127.0.0.1:{}/api/record?{query}", sim.ws_addr().port());
        let flows = serde_json::json!([
            {"id": "bench", "type": "tab", "label": "terminal to MQTT"},
            {"id": "terminal", "type": "websocket-client", "path": url, "tls": "",
             "wholemsg": "false", "hb": "0", "subprotocol": "", "headers": []},
            {"id": "records", "type": "websocket in", "z": "bench", "name": "", "server": "",
             "client": "terminal", "x": 100, "y": 100, "wires": [["publish"]]},
            {"id": "broker", "type": "mqtt-broker", "name": "", "broker": "127.0.0.1",
             "port": broker_port.to_string(), "clientid": "nodered-bench", "autoConnect": true,
             "usetls": false, "protocolVersion": "4", "keepalive": "60", "cleansession": true,
             "autoUnsubscribe": true, "birthTopic": "", "closeTopic": "", "willTopic": ""},
            {"id": "publish", "type": "mqtt out", "z": "bench", "name": "", "topic": TOPIC,
             "qos": "1", "retain": "false", "broker": "broker", "x": 300, "y": 100, "wires": []}
        ]);
        std::fs::write(dir.path().join("flows.json"), flows.to_string()).expect("flows");
        let settings = format!(
            "module.exports = {{ uiHost: \"127.0.0.1\", uiPort: {port}, httpAdminRoot: false, \
             flowFile: \"flows.json\", credentialSecret: false, \
             logging: {{ console: {{ level: \"info\", metrics: false, audit: false }} }}, \
             externalModules: {{ autoInstall: false }}, diagnostics: {{ enabled: false }}, \
             telemetry: {{ enabled: false }} }};\n",
            port = unused_port()
        );
        std::fs::write(dir.path().join("settings.js"), settings).expect("settings");
        let log = std::fs::File::create(dir.path().join("node-red.log")).expect("log");
        let child = Command::new("node")
            .arg(red)
            .arg("-u")
            .arg(dir.path())
            .arg("-s")
            .arg(dir.path().join("settings.js"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("node starts");
        NodeRed {
            child: Some(child),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node-red.log")).unwrap_or_default()
    }

    pub fn proc(&self) -> Proc {
        Proc(self.child.as_ref().expect("running").id())
    }

    /// Until its WebSocket is linked and its MQTT client connected.
    pub async fn ready(&self, sim: &Simulator) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains("Connected to broker") {
            assert!(
                Instant::now() < deadline,
                "Node-RED did not connect to the broker:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_link(sim, 1).await;
    }
}

impl Drop for NodeRed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(5));
        }
    }
}

/// The event id of a push frame forwarded by Node-RED (None for other frames).
fn frame_id(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    (v["code"] == 30000).then(|| measure::event_id("front-door", &v["data"]))
}

pub struct Side {
    pub latency: Latency,
    pub peak_rss: u64,
}

pub struct Comparison {
    pub ours: Side,
    pub theirs: Side,
    pub burst: Burst,
}

/// Half the records with photos (every other one), one every 20 ms.
fn alternate(i: usize) -> bool {
    i % 2 == 0
}

pub async fn run(red: &Path, n: usize, burst_n: usize, settle: Duration) -> Comparison {
    let mut broker = Mosquitto::start();
    let s = simulator(SimConfig::default()).await;
    let terminals = [("front-door".to_string(), s.sim.clone())];
    let gap = Duration::from_millis(20);

    let ours = {
        let mut sub = subscribe(broker.port, "face2mqtt/+/record").await;
        let mut bridge = Setup::one(broker.port, &s.sim).start();
        wait_link(&s.sim, 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let latency = paced(&terminals, &mut sub, n, gap, alternate, measure::bridge_id).await;
        let peak_rss = proc_of(&bridge).peak_rss();
        bridge.stop();
        wait_link(&s.sim, 0).await;
        Side { latency, peak_rss }
    };

    let mut sub = subscribe(broker.port, TOPIC).await;
    let node = NodeRed::start(red, &s.sim, broker.port);
    node.ready(&s.sim).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latency = paced(&terminals, &mut sub, n, gap, alternate, frame_id).await;
    let theirs = Side {
        latency,
        peak_rss: node.proc().peak_rss(),
    };
    // Node-RED keeps nothing: what arrives while the broker is down is gone, so the wait for
    // the rest ends after 15 s of silence.
    let burst = burst(
        &mut broker,
        &s.sim,
        Listen {
            sub: &mut sub,
            id_of: frame_id,
            idle: Duration::from_secs(15),
        },
        // Node-RED has taken a frame once the simulator has sent it.
        (node.proc(), || burst_n),
        burst_n,
        settle,
    )
    .await;
    Comparison {
        ours,
        theirs,
        burst,
    }
}
