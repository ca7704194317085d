//! `face2mqtt run`: the wiring diagram. Each component has a short function in [`components`]
//! that builds its channels and spawns it under the [`Supervisor`]; `run` connects them and stops
//! them in the order that loses nothing: inputs first (ingest, backfill, commands, buttons, Home
//! Assistant), then the MQTT session (in-flight publishes get a few seconds, then `offline`),
//! then the spool writer (a last flush, once nobody can send it anything), then the MQTT driver.
//! docs/architecture.md draws the same picture.

mod components;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::door::gpio::{self, led, Pins};
use crate::messages::{HaMsg, Outbound, RouterMsg};
use crate::pipeline::budget::Budget;
use crate::pipeline::clocks::Clocks;
use crate::pipeline::spool::writer::{self, SpoolCmd};
use crate::pipeline::spool::Spool;
use crate::runtime::exit::Failure;
use crate::runtime::supervisor::{Lifetime, Supervisor};
use crate::runtime::watchdog::Beats;
use crate::stats::Stats;
use components::Stage;

/// A stop ends within this, whatever the state (a full spool, a broker that is gone, a terminal
/// that answers slowly): systemd and the person at the console wait for it. What a cut-short
/// stop leaves undone is safe: unacknowledged entries stay spooled, records not yet flushed are
/// still on the terminal for backfill, and the broker publishes the last will.
const STOP_WITHIN: Duration = Duration::from_millis(4500);
/// Time a stop gives the input tasks (each selects on the stop; this bounds a bug).
const INPUTS_STOP: Duration = Duration::from_secs(1);
/// Time a shutdown gives in-flight publishes.
const DRAIN: Duration = Duration::from_millis(2500);
/// The least a shutdown gives the spool writer's last flush, however late it comes.
const LAST_FLUSH: Duration = Duration::from_millis(500);
/// Time a start waits for the spool's lock (held a moment longer by a spool just closed).
const SPOOL_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the GPIO pins, only when buttons or a status LED are configured (a config without them
/// runs anywhere).
pub type PinsFactory = Box<dyn FnOnce() -> Result<Box<dyn Pins>, gpio::GpioError> + Send>;

/// What the components share.
struct Wiring {
    sup: Supervisor,
    /// The input side, stopped first.
    inputs: Stage,
    spool: Arc<Spool>,
    writer: mpsc::Sender<SpoolCmd>,
    /// Bytes of records on their way to the writer, for every terminal.
    budget: Budget,
    /// The writer's second inbox: deletions and quarantine from the publisher.
    acks: mpsc::Sender<SpoolCmd>,
    out: mpsc::Sender<Outbound>,
    router: mpsc::Sender<RouterMsg>,
    ha: mpsc::Sender<HaMsg>,
    stats: Arc<Stats>,
    /// Each terminal's clock as its records show it (ingest judges, backfill and diagnostics
    /// read).
    clocks: Arc<Clocks>,
}

pub async fn run(
    config: Config,
    pins: PinsFactory,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Failure> {
    // GPIO first: a machine without it must fail at start, not after minutes of running.
    // No restart brings a pin to a machine without one: exit 78, naming the file.
    let hw = gpio::open(&config, pins).map_err(|e| match &config.path {
        Some(path) => Failure::Config(format!("{}: {e}", path.display())),
        None => Failure::Config(e),
    })?;
    let spool = open_spool(&config).await?;
    let (sup, beats) = (Supervisor::default(), Beats::default());
    let (writer_tx, writer_rx) = mpsc::channel(4096);
    let (acks_tx, acks_rx) = mpsc::channel(1024);
    // Bounded, and awaited by senders: a burst of responses or discovery waits, never drops.
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (router_tx, router_rx) = mpsc::channel(64);
    let (ha_tx, ha_rx) = mpsc::channel(256);
    let (records_tx, records_rx) = mpsc::channel(1024);
    let w = Wiring {
        sup: sup.clone(),
        inputs: Stage::default(),
        spool: spool.clone(),
        writer: writer_tx,
        budget: Budget::new(config.spool.memory.0),
        acks: acks_tx,
        out: out_tx,
        router: router_tx,
        ha: ha_tx,
        stats: Arc::new(Stats::default()),
        clocks: Arc::new(Clocks::new(config.terminals.iter().map(|t| t.id.as_str()))),
    };

    // The spool writer, on a thread of its own. What the spool holds at start is on disk
    // already: publishable at once.
    let last = spool
        .last_seq()
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let (durable_tx, durable_rx) = watch::channel(last.unwrap_or(0));
    let (heartbeat, rt) = (
        beats.register("spool writer"),
        tokio::runtime::Handle::current(),
    );
    let spool_stage = Stage::default();
    let inbox = writer::Inbox {
        inputs: writer_rx,
        acks: acks_rx,
    };
    let failed = sup.clone();
    sup.spawn_blocking(&spool_stage.tasks, "spool writer", move || {
        if let writer::End::Failing(why) = writer::run(spool, inbox, durable_tx, heartbeat, rt) {
            failed.fail(format!("spool writer: {why}"));
        }
    });
    let (session, driver) =
        components::spawn_mqtt(&config, &w, out_rx, durable_rx, records_tx, &beats)?;
    let mut routes = HashMap::new();
    for t in &config.terminals {
        routes.insert(t.id.clone(), components::spawn_terminal(&config, t, &w)?);
    }
    let (base, stop) = (config.mqtt.base_topic.clone(), w.inputs.stop.clone());
    let people = crate::door::command::router::People {
        captures: crate::door::command::captures::Captures::new(
            config.people.admit_window,
            crate::door::command::captures::MAX_BYTES,
        ),
        max_pass: config.people.max_pass,
    };
    let router = crate::door::command::route(base.clone(), routes, people, router_rx, stop.clone());
    sup.spawn(
        &w.inputs.tasks,
        "command router",
        Lifetime::UntilShutdown,
        router,
    );
    for (b, edges) in hw.buttons {
        tracing::info!(pin = b.pin, terminal = %b.terminal, "exit button on GPIO{}", b.pin);
        let name = format!("exit button GPIO{}", b.pin);
        let task = gpio::run_button(
            b,
            edges,
            w.router.clone(),
            w.out.clone(),
            base.clone(),
            stop.clone(),
        );
        sup.spawn(&w.inputs.tasks, name, Lifetime::UntilShutdown, task);
    }
    components::spawn_homeassistant(&config, &w, ha_rx, records_rx);
    if let Some(pin) = hw.led {
        let (spool, stats, links) = (w.spool.clone(), w.stats.clone(), config.terminals.len());
        let health = move || led::health(&spool, &stats, links, config.spool.max_size.0);
        let task = led::run_led(pin, health, stop.clone());
        sup.spawn(&w.inputs.tasks, "status LED", Lifetime::UntilShutdown, task);
    }
    let watchdog = Stage::default();
    let period = sd_notify::watchdog_enabled();
    let feed = crate::runtime::watchdog::run(beats, sup.clone(), period, watchdog.stop.clone());
    watchdog.tasks.spawn(feed);
    // Only the stages and the counters stay; every sender held here is dropped now, or the
    // writer would never see its inboxes close and the last flush would wait for nothing.
    let Wiring {
        inputs,
        stats,
        sup: _,
        spool: _,
        budget: _,
        writer,
        acks,
        out,
        router,
        ha,
        clocks: _,
    } = w;
    drop((writer, acks, out, router, ha));
    let (n, broker) = (config.terminals.len(), &config.mqtt.url);
    tracing::info!(terminals = n, broker = %broker, "face2mqtt running");
    // Every task is spawned and the spool is open: ready. (Terminal links and the broker come
    // and go; waiting for them would make a boot with the broker down look like a failed start.)
    crate::runtime::service::notify_ready(&format!("running: {n} terminal(s), broker {broker}"));

    tokio::select! {
        _ = shutdown => {}
        _ = sup.failed() => {}
    }
    let stop_by = tokio::time::Instant::now() + STOP_WITHIN;
    sup.stopping();
    crate::runtime::service::notify_stopping();
    // Stopping takes a few seconds of draining; the watchdog is for a running service.
    watchdog.stop().await;
    tracing::info!("stopping: no new records are taken");
    if tokio::time::timeout(INPUTS_STOP, inputs.stop())
        .await
        .is_err()
    {
        tracing::error!(
            "input tasks did not end within {INPUTS_STOP:?} of the stop; stopping without them"
        );
    }
    tracing::info!("inputs stopped; finishing in-flight publishes");
    // The session bounds its own drain; this bounds a broker that never answers the last will's
    // replacement either. The flush keeps at least its share.
    let session_by = stop_by - LAST_FLUSH;
    if tokio::time::timeout_at(session_by, session.stop())
        .await
        .is_err()
    {
        tracing::warn!(
            "the MQTT session did not finish in time; the broker's last will says offline"
        );
    }
    // The session held the writer's last sender: the writer flushes and ends.
    let flush_by = stop_by.max(tokio::time::Instant::now() + LAST_FLUSH);
    if tokio::time::timeout_at(flush_by, spool_stage.stop())
        .await
        .is_err()
    {
        tracing::error!("the spool's last flush did not finish in time; records not yet on disk are fetched again by backfill after the restart");
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), driver.stop()).await;
    let published = stats.published.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(published, "face2mqtt stopped");
    sup.failure()
        .map_or(Ok(()), |why| Err(Failure::Runtime(why)))
}

async fn open_spool(config: &Config) -> Result<Arc<Spool>, Failure> {
    let (dir, max) = (config.spool.dir.clone(), config.spool.max_size.0);
    // sled lets go of its lock when its background threads drop their handles, a moment after
    // the spool is closed: after a reload, wait for that rather than fail.
    let deadline = tokio::time::Instant::now() + SPOOL_LOCK_WAIT;
    let spool = loop {
        let dir = dir.clone();
        let opened = tokio::task::spawn_blocking(move || Spool::open(&dir, max))
            .await
            .map_err(|e| Failure::Runtime(format!("spool: {e}")))?;
        match opened {
            Err(e) if e.is_locked() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A restart would not change these: systemd's unit does not restart on exit 78.
            Err(e) if e.is_permanent() => return Err(Failure::Config(e.to_string())),
            other => break other.map_err(|e| Failure::Runtime(e.to_string()))?,
        }
    };
    if !spool.is_empty() {
        let records = spool.len();
        tracing::info!(
            records,
            "records from before the restart are waiting in the spool"
        );
    }
    Ok(Arc::new(spool))
}
