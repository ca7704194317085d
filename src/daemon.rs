//! `face2mqtt run`: starts every task, waits for a signal, and stops them in the order that loses
//! nothing: inputs first (ingest, backfill), then the spool writer (final flush), then the
//! publisher (a few seconds for in-flight publishes, then `offline`), then the MQTT driver.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backfill::Backfill;
use crate::backoff::Backoff;
use crate::cli::Failure;
use crate::command::{self, Executor, Gate, Responder, Route};
use crate::config::Config;
use crate::gpio::led::{self, Health};
use crate::gpio::{self, GpioError, Pins};
use crate::homeassistant::event::FreshEvents;
use crate::homeassistant::{self, Diagnostics, HomeAssistant};
use crate::ingest::Ingest;
use crate::publish::{self, HaLink, Publisher, Stats};
use crate::spool::Spool;
use crate::spool_writer;
use crate::terminal::TerminalClient;

/// Time a shutdown gives in-flight publishes.
const DRAIN: Duration = Duration::from_secs(5);

/// Opens the GPIO pins, only when buttons or a status LED are configured (a config without them
/// runs anywhere).
pub type PinsFactory = Box<dyn FnOnce() -> Result<Box<dyn Pins>, GpioError> + Send>;

pub async fn run(
    config: Config,
    pins: PinsFactory,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Failure> {
    // GPIO first: a machine without it must fail at start, not after minutes of running.
    let mut button_edges = Vec::new();
    let mut led_pin = None;
    let _pins = if config.buttons.is_empty() && config.status_led.is_none() {
        None
    } else {
        let what = if config.buttons.is_empty() {
            "[status_led]"
        } else {
            "[[button]]"
        };
        let mut p = pins().map_err(|e| Failure::Runtime(format!("{what}: {e}")))?;
        for b in &config.buttons {
            let edges = p
                .watch(b.pin, b.pull)
                .map_err(|e| Failure::Runtime(format!("[[button]]: {e}")))?;
            button_edges.push((b.clone(), edges));
        }
        if let Some(l) = &config.status_led {
            let out = p
                .output(l.pin, l.active_low)
                .map_err(|e| Failure::Runtime(format!("[status_led]: {e}")))?;
            led_pin = Some(out);
        }
        Some(p)
    };
    let dir = config.spool.dir.clone();
    let max = config.spool.max_size.0;
    let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, max))
        .await
        .map_err(|e| Failure::Runtime(format!("spool: {e}")))?
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let spool = Arc::new(spool);
    if !spool.is_empty() {
        tracing::info!(
            records = spool.len(),
            "records from before the restart are waiting in the spool"
        );
    }

    let options = crate::mqtt::options(&config.mqtt)
        .map_err(|e| Failure::Config(format!("mqtt.url: {e}")))?;
    let (client, eventloop) = AsyncClient::new(options, 1024);
    let (events_tx, events_rx) = mpsc::channel(1024);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (spool_tx, spool_rx) = mpsc::channel(4096);
    // What the spool holds at start is on disk already: publishable at once.
    let last = spool
        .last_seq()
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let (durable_tx, durable_rx) = watch::channel(last.unwrap_or(0));
    let stats = Arc::new(Stats::default());
    let beats = crate::watchdog::Beats::default();
    let (router_tx, router_rx) = mpsc::channel(64);
    let (ha_tx, ha_rx) = mpsc::channel(256);
    let ha_config = &config.home_assistant;

    let inputs = CancellationToken::new();
    let outputs = CancellationToken::new();
    let mqtt_stop = CancellationToken::new();

    let driver = tokio::spawn(publish::drive(
        eventloop,
        events_tx,
        Backoff::new(config.mqtt.reconnect_min, config.mqtt.reconnect_max),
        mqtt_stop.clone(),
    ));
    let publisher = tokio::spawn(
        Publisher {
            spool: spool.clone(),
            client,
            base: config.mqtt.base_topic.clone(),
            terminals: config.terminals.iter().map(|t| t.id.clone()).collect(),
            events: events_rx,
            outbound: out_rx,
            durable: durable_rx,
            stats: stats.clone(),
            drain: DRAIN,
            commands: Some(router_tx.clone()),
            ha: Some(HaLink {
                prefix: ha_config.discovery_prefix.clone(),
                tx: ha_tx.clone(),
                fresh: ha_config
                    .enabled
                    .then(|| FreshEvents::new(ha_config.max_event_age)),
            }),
            heartbeat: beats.register("publisher"),
        }
        .run(outputs.clone()),
    );
    let writer = tokio::spawn(spool_writer::run(
        spool.clone(),
        spool_rx,
        durable_tx,
        beats.register("spool writer"),
    ));

    let terminals = TaskTracker::new();
    let mut routes = HashMap::new();
    let clock: Arc<dyn Fn() -> Result<bool, String> + Send + Sync> =
        Arc::new(command::clock::kernel_clock_synchronized);
    for t in &config.terminals {
        let client = TerminalClient::new(t.endpoint());
        let (trigger_tx, trigger_rx) = watch::channel(0u64);
        let caught_up = Arc::new(AtomicU64::new(0));

        // Commands: one executor per terminal, so a terminal that never answers delays only itself.
        let gate = Gate::new(
            config.commands.max_age,
            config.commands.open_hold,
            t.allowed_commands(),
        );
        let responder = Responder {
            base: config.mqtt.base_topic.clone(),
            terminal: t.id.clone(),
            out: out_tx.clone(),
        };
        let (jobs_tx, jobs_rx) = mpsc::channel(8);
        terminals.spawn(
            Executor {
                client: client.clone(),
                jobs: jobs_rx,
                responder: responder.clone(),
                max_age: config.commands.max_age,
                require_synchronized_clock: config.commands.require_synchronized_clock,
                clock_synchronized: clock.clone(),
            }
            .run(inputs.clone()),
        );
        terminals.spawn(command::time_sync(
            t.time_sync_interval,
            trigger_tx.subscribe(),
            jobs_tx.clone(),
            inputs.clone(),
        ));
        routes.insert(
            t.id.clone(),
            Route {
                gate,
                jobs: jobs_tx,
                responder,
            },
        );

        terminals.spawn(
            Ingest {
                terminal: t.clone(),
                client: client.clone(),
                spool: spool_tx.clone(),
                outbound: out_tx.clone(),
                backfill: trigger_tx,
                caught_up: caught_up.clone(),
            }
            .run(inputs.clone()),
        );
        if ha_config.enabled {
            terminals.spawn(homeassistant::fetch_details(
                t.id.clone(),
                client.clone(),
                ha_tx.clone(),
                inputs.clone(),
            ));
        }
        terminals.spawn(
            Backfill {
                terminal: t.clone(),
                client,
                spool: spool.clone(),
                writer: spool_tx.clone(),
                trigger: trigger_rx,
                caught_up,
            }
            .run(inputs.clone()),
        );
    }
    terminals.spawn(command::route(
        config.mqtt.base_topic.clone(),
        routes,
        router_rx,
        inputs.clone(),
    ));
    for (b, edges) in button_edges {
        tracing::info!(pin = b.pin, terminal = %b.terminal, "exit button on GPIO{}", b.pin);
        terminals.spawn(gpio::run_button(
            b,
            edges,
            router_tx.clone(),
            out_tx.clone(),
            config.mqtt.base_topic.clone(),
            inputs.clone(),
        ));
    }
    terminals.spawn(
        HomeAssistant {
            config: config.home_assistant.clone(),
            base: config.mqtt.base_topic.clone(),
            terminals: config.terminals.clone(),
            buttons: config.buttons.clone(),
            inbox: ha_rx,
            out: out_tx.clone(),
            diagnostics: Diagnostics {
                spool: spool.clone(),
                max_bytes: max,
                stats: stats.clone(),
                terminals: config.terminals.len(),
            },
            diagnostics_interval: config.mqtt.diagnostics_interval,
        }
        .run(inputs.clone()),
    );
    drop(ha_tx);
    if let Some(pin) = led_pin {
        let (spool, stats, links) = (spool.clone(), stats.clone(), config.terminals.len());
        let health = move || Health {
            broker_up: stats.broker_up.load(std::sync::atomic::Ordering::Relaxed),
            links_up: stats.links_up.load(std::sync::atomic::Ordering::Relaxed) as usize,
            links,
            spool_filling: led::spool_filling(
                spool.bytes(),
                max,
                spool.oldest_age().ok().flatten(),
            ),
        };
        terminals.spawn(led::run_led(pin, health, inputs.clone()));
    }
    let watchdog_stop = CancellationToken::new();
    let watchdog = tokio::spawn(crate::watchdog::run(
        beats,
        sd_notify::watchdog_enabled(),
        watchdog_stop.clone(),
    ));
    terminals.close();
    drop(router_tx);
    drop(spool_tx);
    drop(out_tx);
    tracing::info!(terminals = config.terminals.len(), broker = %config.mqtt.url, "face2mqtt running");
    // Every task is spawned and the spool is open: ready. (Terminal links and the broker come
    // and go; waiting for them would make a boot with the broker down look like a failed start.)
    crate::service::notify_ready(&format!(
        "running: {} terminal(s), broker {}",
        config.terminals.len(),
        config.mqtt.url
    ));

    shutdown.await;
    crate::service::notify_stopping();
    // Stopping takes a few seconds of draining; the watchdog is for a running service.
    watchdog_stop.cancel();
    let _ = watchdog.await;
    tracing::info!("stopping: no new records are taken");
    inputs.cancel();
    terminals.wait().await;
    // Every sender of the spool channel is gone now; the writer flushes and ends.
    if writer.await.is_err() {
        tracing::error!("the spool writer failed while stopping");
    }
    tracing::info!("spool flushed; finishing in-flight publishes");
    outputs.cancel();
    if publisher.await.is_err() {
        tracing::error!("the publisher failed while stopping");
    }
    mqtt_stop.cancel();
    let _ = driver.await;
    tracing::info!(
        published = stats.published.load(std::sync::atomic::Ordering::Relaxed),
        "face2mqtt stopped"
    );
    Ok(())
}
