//! Exit buttons: edges driven through the `Pins` trait into the real daemon (in process), with a
//! real Mosquitto and the simulator behind it.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use face2mqtt::config::{Config, Pull};
use face2mqtt::gpio::{Edge, GpioError, Pins};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct FakePins(Arc<Mutex<HashMap<u8, mpsc::UnboundedSender<Edge>>>>);

impl Pins for FakePins {
    fn watch(&mut self, pin: u8, _pull: Pull) -> Result<mpsc::UnboundedReceiver<Edge>, GpioError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pin, tx);
        Ok(rx)
    }
}

impl FakePins {
    /// Sets the pin's level (true = high) now.
    fn level(&self, pin: u8, high: bool) {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&pin)
            .expect("pin watched")
            .send((high, Instant::now()))
            .expect("daemon listening");
    }
}

struct Daemon {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

const BUTTONS: &str = r#"
[[button]]
pin = 17
terminal = "front-door"
press = "open"
long_press = "reboot"
long_press_after = "400ms"
debounce = "50ms"
"#;

async fn daemon(broker: &Mosquitto, sim: &Sim, pins: FakePins) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = BridgeSetup {
        extra_sections: "[commands]\nrequire_synchronized_clock = false\nopen_hold = \"100ms\"\n",
        extra_terminal_keys: BUTTONS,
        ..BridgeSetup::new(broker.port, &sim.sim, PASSWORD)
    };
    let config =
        Config::parse(&bridge_config(&setup, &dir.path().join("spool"))).expect("config parses");
    assert_eq!(config.validate(), Vec::<String>::new());
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let factory: face2mqtt::daemon::PinsFactory =
            Box::new(move || Ok(Box::new(pins) as Box<dyn Pins>));
        if let Err(e) = face2mqtt::daemon::run(config, factory, token.cancelled_owned()).await {
            panic!("daemon failed: {e:?}");
        }
    });
    Daemon {
        stop,
        task,
        _dir: dir,
    }
}

async fn ready(sim: &Sim, pins: &FakePins) {
    let mut c = sim.sim.ws_clients();
    tokio::time::timeout(Duration::from_secs(20), c.wait_for(|n| *n == 1))
        .await
        .expect("link")
        .expect("watch");
    eventually("pin 17 watched", Duration::from_secs(10), || {
        let ok = pins.0.lock().map(|m| m.contains_key(&17)).unwrap_or(false);
        async move { ok }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_press_opens_and_a_hold_runs_the_long_press_action() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/bridge/button/#").await;
    let pins = FakePins::default();
    let _d = daemon(&broker, &s, pins.clone()).await;
    ready(&s, &pins).await;

    // Active low with a pull-up: pressed is low.
    pins.level(17, false);
    tokio::time::sleep(Duration::from_millis(120)).await;
    pins.level(17, true);
    let sim = s.sim.clone();
    eventually("the press opened the door", Duration::from_secs(10), || {
        let sim = sim.clone();
        async move { sim.opens().len() == 1 }
    })
    .await;
    assert_eq!(
        s.sim.opens()[0].remark.as_deref(),
        Some("exit button (GPIO17)")
    );

    pins.level(17, false);
    let sim = s.sim.clone();
    eventually("the hold rebooted", Duration::from_secs(10), || {
        let sim = sim.clone();
        async move { sim.reboots() == 1 }
    })
    .await;
    pins.level(17, true);

    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(10),
        "both button events",
        |m| m.len() >= 2,
    )
    .await;
    let actions: Vec<serde_json::Value> = seen
        .iter()
        .map(|(_, p, _)| serde_json::from_slice(p).expect("json"))
        .collect();
    assert_eq!(actions[0]["action"], "press");
    assert_eq!(actions[1]["action"], "long_press");
    assert_eq!(s.sim.opens().len(), 1, "the hold did not also open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_within_the_debounce_window_count_once() {
    let broker = Mosquitto::start();
    let s = default_simulator().await;
    let mut sub = subscribe(broker.port, "face2mqtt/bridge/button/#").await;
    let pins = FakePins::default();
    let _d = daemon(&broker, &s, pins.clone()).await;
    ready(&s, &pins).await;

    for level in [false, true, false, true, false] {
        pins.level(17, level);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    pins.level(17, true);
    let mut seen = Vec::new();
    collect_until(
        &mut sub,
        &mut seen,
        Duration::from_secs(10),
        "a button event",
        |m| !m.is_empty(),
    )
    .await;
    // Anything more would have arrived by the time the door answered.
    let sim = s.sim.clone();
    eventually("the door opened", Duration::from_secs(10), || {
        let sim = sim.clone();
        async move { !sim.opens().is_empty() }
    })
    .await;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.rx.recv()).await {
        seen.push(m);
    }
    assert_eq!(seen.len(), 1, "one press event for the whole bouncy press");
    assert_eq!(s.sim.opens().len(), 1);
}

#[tokio::test]
async fn a_button_on_a_machine_without_gpio_fails_at_start_with_a_clear_message() {
    if std::path::Path::new("/dev/gpiomem").exists()
        || std::path::Path::new("/dev/gpiochip0").exists()
    {
        eprintln!("this machine has GPIO; the refusal cannot be shown here");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\n[spool]\ndir = {:?}\n[[terminal]]\nid = \"front-door\"\nhost = \"127.0.0.1\"\npassword = \"x\"\n{BUTTONS}",
            free_port(),
            dir.path().join("spool")
        ),
    )
    .expect("write");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_face2mqtt"))
            .args(["run", "-c"])
            .arg(&cfg)
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[[button]]") && err.contains("no usable GPIO"),
        "{err}"
    );
}
