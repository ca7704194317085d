//! Exit buttons and the status LED on GPIO pins. The press and blink logic is pure ([`press`],
//! [`led`]); the pins are behind the [`Pins`] trait so tests drive edges and read levels, with
//! rppal behind it on a Raspberry Pi.

pub mod edges;
pub mod led;
pub mod press;

use std::time::Instant;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ButtonAction, ButtonConfig, Config, Pull};
use crate::messages::Outbound;
use crate::messages::{topics, Cmd, RouterMsg};
pub use edges::{EdgeReceiver, EdgeSender};
use led::OutputPin;
use press::{ButtonLogic, Press};

/// The pins the config asked for, claimed.
pub struct Hardware {
    pub buttons: Vec<(ButtonConfig, EdgeReceiver)>,
    pub led: Option<Box<dyn OutputPin>>,
    /// Interrupts stop when the pins are dropped: held for the daemon's lifetime.
    pub pins: Option<Box<dyn Pins>>,
}

/// Claims the configured buttons and status LED. The pins are opened only when the config has
/// any, so a config without them runs on any machine.
pub fn open(
    config: &Config,
    pins: impl FnOnce() -> Result<Box<dyn Pins>, GpioError>,
) -> Result<Hardware, String> {
    let mut hw = Hardware {
        buttons: Vec::new(),
        led: None,
        pins: None,
    };
    if config.buttons.is_empty() && config.status_led.is_none() {
        return Ok(hw);
    }
    let what = if config.buttons.is_empty() {
        "[status_led]"
    } else {
        "[[button]]"
    };
    let mut p = pins().map_err(|e| format!("{what}: {e}"))?;
    for b in &config.buttons {
        let edges = p
            .watch(b.pin, b.pull)
            .map_err(|e| format!("[[button]]: {e}"))?;
        hw.buttons.push((b.clone(), edges));
    }
    if let Some(l) = &config.status_led {
        let out = p
            .output(l.pin, l.active_low)
            .map_err(|e| format!("[status_led]: {e}"))?;
        hw.led = Some(out);
    }
    hw.pins = Some(p);
    Ok(hw)
}

/// What `check` can know without touching a pin's mode: the GPIO opens and every configured pin
/// exists on this machine. A line per use, or why not (naming the config key).
pub fn probe(config: &Config) -> Result<Vec<String>, String> {
    let mut uses: Vec<(String, u8)> = config
        .buttons
        .iter()
        .map(|b| (format!("[[button]] of terminal {}", b.terminal), b.pin))
        .collect();
    uses.extend(
        config
            .status_led
            .iter()
            .map(|l| ("[status_led]".to_string(), l.pin)),
    );
    let Some((first, _)) = uses.first() else {
        return Ok(Vec::new());
    };
    let gpio = rppal::gpio::Gpio::new()
        .map_err(|e| format!("{first}: {}", GpioError::Unavailable(e.to_string())))?;
    uses.into_iter()
        .map(|(what, pin)| match gpio.get(pin) {
            Ok(_) => Ok(format!("{what}: GPIO{pin}")),
            Err(e) => Err(format!(
                "{what}: {}",
                GpioError::Pin {
                    pin,
                    reason: e.to_string()
                }
            )),
        })
        .collect()
}

/// A level change: true = high.
pub type Edge = (bool, Instant);

#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("this machine has no usable GPIO ({0}); remove the [[button]] entries or run on a Raspberry Pi")]
    Unavailable(String),
    #[error("GPIO{pin}: {reason}")]
    Pin { pin: u8, reason: String },
}

/// The machine's GPIO: input pins that report their edges, output pins we set.
pub trait Pins: Send {
    fn watch(&mut self, pin: u8, pull: Pull) -> Result<EdgeReceiver, GpioError>;
    /// An output, dark to start with. `active_low`: the LED lights when the pin is low.
    fn output(&mut self, pin: u8, active_low: bool) -> Result<Box<dyn OutputPin>, GpioError>;
}

/// The Raspberry Pi's GPIO through rppal (the maintained `rpi-pal` fork).
pub struct RppalPins {
    gpio: rppal::gpio::Gpio,
    /// Interrupts stop when their pin is dropped: keep them.
    inputs: Vec<rppal::gpio::InputPin>,
}

impl RppalPins {
    pub fn new() -> Result<RppalPins, GpioError> {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| GpioError::Unavailable(e.to_string()))?;
        Ok(RppalPins {
            gpio,
            inputs: Vec::new(),
        })
    }
}

impl Pins for RppalPins {
    fn watch(&mut self, pin: u8, pull: Pull) -> Result<EdgeReceiver, GpioError> {
        use rppal::gpio::Trigger;
        let err = |reason: String| GpioError::Pin { pin, reason };
        let p = self.gpio.get(pin).map_err(|e| err(e.to_string()))?;
        let mut input = match pull {
            Pull::Up => p.into_input_pullup(),
            Pull::Down => p.into_input_pulldown(),
            Pull::None => p.into_input(),
        };
        let (tx, rx) = edges::channel(edges::CAPACITY);
        // Debounce is ours (pure and tested), so rppal reports every edge.
        input
            .set_async_interrupt(Trigger::Both, None, move |event| {
                tx.send((event.trigger == Trigger::RisingEdge, Instant::now()));
            })
            .map_err(|e| err(e.to_string()))?;
        self.inputs.push(input);
        Ok(rx)
    }

    fn output(&mut self, pin: u8, active_low: bool) -> Result<Box<dyn OutputPin>, GpioError> {
        let p = self.gpio.get(pin).map_err(|e| GpioError::Pin {
            pin,
            reason: e.to_string(),
        })?;
        let out = if active_low {
            p.into_output_high()
        } else {
            p.into_output_low()
        };
        Ok(Box::new(RppalOutput { out, active_low }))
    }
}

struct RppalOutput {
    out: rppal::gpio::OutputPin,
    active_low: bool,
}

impl OutputPin for RppalOutput {
    fn set(&mut self, lit: bool) {
        if lit != self.active_low {
            self.out.set_high();
        } else {
            self.out.set_low();
        }
    }
}

fn cmd_of(action: ButtonAction) -> Option<Cmd> {
    match action {
        ButtonAction::Open => Some(Cmd::Open),
        ButtonAction::Reboot => Some(Cmd::Reboot),
        ButtonAction::SyncTime => Some(Cmd::SyncTime),
        ButtonAction::None => None,
    }
}

/// One button: edges in, commands to the router and events to `<base>/bridge/button/<pin>` out.
pub async fn run_button(
    cfg: ButtonConfig,
    mut edges: EdgeReceiver,
    router: mpsc::Sender<RouterMsg>,
    out: mpsc::Sender<Outbound>,
    base: String,
    shutdown: CancellationToken,
) {
    let long_enabled = cfg.long_press != ButtonAction::None;
    let mut logic = ButtonLogic::new(
        cfg.debounce,
        cfg.long_press_after,
        long_enabled,
        cfg.active_low,
    );
    loop {
        let deadline = logic.next_deadline();
        let press = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = edges.recv() => match e {
                Some((level, at)) => logic.edge(level, at),
                None => {
                    tracing::error!(pin = cfg.pin, "GPIO edge reports stopped; the button no longer works");
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline.map(tokio::time::Instant::from_std).unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                logic.tick(Instant::now())
            }
        };
        let Some(press) = press else { continue };
        let (word, action) = match press {
            Press::Short => ("press", cfg.press),
            Press::Long => ("long_press", cfg.long_press),
        };
        tracing::info!(pin = cfg.pin, terminal = %cfg.terminal, action = word, "exit button");
        let topic = topics::button(&base, cfg.pin);
        let event = Outbound::Message {
            topic,
            // `event_type` makes the payload a Home Assistant event as it is.
            payload: json!({"action": word, "event_type": word})
                .to_string()
                .into_bytes(),
            retain: false,
        };
        if out.send(event).await.is_err() {
            return;
        }
        if let Some(cmd) = cmd_of(action) {
            let msg = RouterMsg::Button {
                terminal: cfg.terminal.clone(),
                cmd,
                pin: cfg.pin,
                at: Instant::now(),
            };
            if router.send(msg).await.is_err() {
                return;
            }
        }
    }
}
