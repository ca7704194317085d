//! The daemon in this process, with fake GPIO pins that tests drive (inputs) and read (outputs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use face2mqtt::config::{Config, Pull};
use face2mqtt::door::gpio::led::OutputPin;
use face2mqtt::door::gpio::{EdgeReceiver, EdgeSender, GpioError, Pins};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{bridge_config, BridgeSetup};

#[derive(Clone, Default)]
pub struct FakePins {
    pub inputs: Arc<Mutex<HashMap<u8, EdgeSender>>>,
    /// Each output pin's level changes (true = lit), in order.
    pub outputs: Arc<Mutex<HashMap<u8, watch::Sender<Vec<bool>>>>>,
}

impl Pins for FakePins {
    fn watch(&mut self, pin: u8, _pull: Pull) -> Result<EdgeReceiver, GpioError> {
        let (tx, rx) =
            face2mqtt::door::gpio::edges::channel(face2mqtt::door::gpio::edges::CAPACITY);
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pin, tx);
        Ok(rx)
    }

    fn output(&mut self, pin: u8, _active_low: bool) -> Result<Box<dyn OutputPin>, GpioError> {
        let (tx, _) = watch::channel(Vec::new());
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pin, tx.clone());
        Ok(Box::new(FakeOutput(tx)))
    }
}

struct FakeOutput(watch::Sender<Vec<bool>>);

impl OutputPin for FakeOutput {
    fn set(&mut self, lit: bool) {
        self.0.send_modify(|v| v.push(lit));
    }
}

impl FakePins {
    /// Sets the input pin's level (true = high) now.
    pub fn level(&self, pin: u8, high: bool) {
        self.level_at(pin, high, Instant::now());
    }

    /// Reports an edge to `high` that happened at `at`, as the GPIO driver timestamps its
    /// edges: input timing is stated, not produced by sleeping.
    pub fn level_at(&self, pin: u8, high: bool, at: Instant) {
        let map = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        let edges = map.get(&pin).expect("pin watched");
        assert!(!edges.is_closed(), "daemon listening");
        edges.send((high, at));
    }

    pub fn watched(&self, pin: u8) -> bool {
        self.inputs
            .lock()
            .map(|m| m.contains_key(&pin))
            .unwrap_or(false)
    }

    /// The output pin's level history, once the daemon has claimed it.
    pub fn output_levels(&self, pin: u8) -> Option<watch::Receiver<Vec<bool>>> {
        self.outputs.lock().ok()?.get(&pin).map(|tx| tx.subscribe())
    }
}

pub struct Daemon {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start(setup: &BridgeSetup<'_>, pins: FakePins) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(setup, pins, dir)
    }

    /// Starts on an existing spool directory (a restart with a new config).
    pub fn start_in(setup: &BridgeSetup<'_>, pins: FakePins, dir: tempfile::TempDir) -> Daemon {
        let config =
            Config::parse(&bridge_config(setup, &dir.path().join("spool"))).expect("config parses");
        assert_eq!(config.validate(), Vec::<String>::new());
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let factory: face2mqtt::runtime::daemon::PinsFactory =
                Box::new(move || Ok(Box::new(pins) as Box<dyn Pins>));
            if let Err(e) =
                face2mqtt::runtime::daemon::run(config, factory, token.cancelled_owned()).await
            {
                panic!("daemon failed: {e:?}");
            }
        });
        Daemon {
            stop,
            task: Some(task),
            dir,
        }
    }

    /// Graceful stop (as on SIGTERM); returns the spool directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.expect("daemon stopped cleanly");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
