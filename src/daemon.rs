//! `face2mqtt run`: starts every task, waits for a signal, and stops them in the order that loses
//! nothing: inputs first (ingest, backfill), then the spool writer (final flush), then the
//! publisher (a few seconds for in-flight publishes, then `offline`), then the MQTT driver.

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
use crate::config::Config;
use crate::ingest::Ingest;
use crate::publish::{self, Publisher, Stats};
use crate::spool::Spool;
use crate::spool_writer;
use crate::terminal::TerminalClient;

/// Time a shutdown gives in-flight publishes.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Failure> {
    if !config.buttons.is_empty() {
        tracing::warn!(
            buttons = config.buttons.len(),
            "[[button]] is configured, but this build does not drive GPIO buttons yet; they are ignored"
        );
    }
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
        }
        .run(outputs.clone()),
    );
    let writer = tokio::spawn(spool_writer::run(spool.clone(), spool_rx, durable_tx));

    let terminals = TaskTracker::new();
    for t in &config.terminals {
        let client = TerminalClient::new(t.endpoint());
        let (trigger_tx, trigger_rx) = watch::channel(0u64);
        let caught_up = Arc::new(AtomicU64::new(0));
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
    terminals.close();
    drop(spool_tx);
    drop(out_tx);
    tracing::info!(terminals = config.terminals.len(), broker = %config.mqtt.url, "face2mqtt running");

    shutdown.await;
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
